"""the queue of each task, of the tasks of each schedule, and the queues of each worker

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NOT NULL with a constant default: rows written before are in the default queue, and
    # PostgreSQL (11+) adds the column without rewriting the table.
    op.add_column(
        "tasks",
        sa.Column("queue", sa.String(40), nullable=False, server_default=sa.text("'default'")),
    )
    op.add_column(
        "schedules",
        sa.Column("queue", sa.String(40), nullable=False, server_default=sa.text("'default'")),
    )
    op.add_column(
        "workers",
        sa.Column("queues", sa.String(2000), nullable=False, server_default=sa.text("'default'")),
    )


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("queues")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("queue")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("queue")
