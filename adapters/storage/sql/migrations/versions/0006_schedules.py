"""schedules: tasks submitted at the times of a cron expression

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("name", sa.String(100)),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(JSONB(), "postgresql")),
        sa.Column("max_attempts", sa.Integer()),
        sa.Column("timeout_seconds", sa.Double()),
        sa.Column("callback_url", sa.String(2048)),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True)),
        sa.Column("last_task_id", sa.Uuid()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner", "name", name="uq_schedules_owner_name"),
    )
    op.create_index("ix_schedules_owner_id", "schedules", ["owner", "id"])
    op.create_index("ix_schedules_paused_next_run_at", "schedules", ["paused", "next_run_at"])


def downgrade() -> None:
    op.drop_table("schedules")
