"""the index that lists a queue's tasks

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On PostgreSQL, writes to the tasks table wait while the index is built.
    op.create_index("ix_tasks_owner_queue_id", "tasks", ["owner", "queue", "id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_owner_queue_id", table_name="tasks")
