"""progress of running tasks; index for the recovery sweep

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("progress_fraction", sa.Double()))
        batch.add_column(sa.Column("progress_message", sa.String()))
        batch.add_column(sa.Column("progress_updated_at", sa.DateTime(timezone=True)))
    op.create_index("ix_tasks_status_updated_at", "tasks", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_status_updated_at", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("progress_updated_at")
        batch.drop_column("progress_message")
        batch.drop_column("progress_fraction")
