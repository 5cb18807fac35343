"""the due sweep's index holds only the scheduled tasks; on PostgreSQL the idempotency keys'
unique index only the tasks with a key

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every update of a task writes an entry in each index whose condition it meets (PostgreSQL
# writes a new version of the row): indexes that leave out the tasks they are not for cost
# those tasks nothing. On PostgreSQL, writes to the tasks table wait while they are built.


def upgrade() -> None:
    op.drop_index("ix_tasks_status_run_at", table_name="tasks")
    op.create_index(
        "ix_tasks_status_run_at",
        "tasks",
        ["status", "run_at"],
        postgresql_where=sa.text("status = 'SCHEDULED'"),
        sqlite_where=sa.text("status = 'SCHEDULED'"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Built before the constraint goes: a key is never unguarded.
        op.create_index(
            "ix_tasks_owner_idempotency_key",
            "tasks",
            ["owner", "idempotency_key"],
            unique=True,
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        )
        op.drop_constraint("uq_tasks_owner_idempotency_key", "tasks", type_="unique")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_unique_constraint(
            "uq_tasks_owner_idempotency_key", "tasks", ["owner", "idempotency_key"]
        )
        op.drop_index("ix_tasks_owner_idempotency_key", table_name="tasks")
    op.drop_index("ix_tasks_status_run_at", table_name="tasks")
    op.create_index("ix_tasks_status_run_at", "tasks", ["status", "run_at"])
