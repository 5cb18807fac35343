"""the limits of the queues each worker takes with one

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Comma-separated queue:limit pairs; workers recorded before have none.
    op.add_column(
        "workers",
        sa.Column("queue_limits", sa.String(2000), nullable=False, server_default=sa.text("''")),
    )


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("queue_limits")
