"""the index that lists a queue's tasks

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Partial: the tasks of the default queue (every task stored before queues) are not in
    # it, and their writes do not write it. On PostgreSQL, writes to the tasks table wait
    # while the index is built.
    op.create_index(
        "ix_tasks_owner_queue_id",
        "tasks",
        ["owner", "queue", "id"],
        postgresql_where=sa.text("queue <> 'default'"),
        sqlite_where=sa.text("queue <> 'default'"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_owner_queue_id", table_name="tasks")
