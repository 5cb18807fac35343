"""the schedule that submitted a task, and the index that lists a schedule's tasks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: PostgreSQL adds it without rewriting the table.
    op.add_column("tasks", sa.Column("schedule_id", sa.Uuid(), nullable=True))
    # Partial: the tasks no schedule submitted (every task stored before this) are not in it,
    # and a submit without a schedule does not write it.
    op.create_index(
        "ix_tasks_owner_schedule_id_id",
        "tasks",
        ["owner", "schedule_id", "id"],
        postgresql_where=sa.text("schedule_id IS NOT NULL"),
        sqlite_where=sa.text("schedule_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_owner_schedule_id_id", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("schedule_id")
