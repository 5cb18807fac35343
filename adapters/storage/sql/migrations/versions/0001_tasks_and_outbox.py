"""tasks and outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("payload", _json()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("retry_base_delay", sa.Interval(), nullable=False),
        sa.Column("retry_factor", sa.Double(), nullable=False),
        sa.Column("retry_max_delay", sa.Interval(), nullable=False),
        sa.Column("timeout", sa.Interval(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True)),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("request_fingerprint", sa.String(128)),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("result", _json()),
        sa.Column("error_type", sa.String(200)),
        sa.Column("error_message", sa.String()),
        sa.Column("error_retryable", sa.Boolean()),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_tasks_owner_idempotency_key"),
    )
    op.create_index("ix_tasks_owner_id", "tasks", ["owner", "id"])
    op.create_index("ix_tasks_owner_status_id", "tasks", ["owner", "status", "id"])
    op.create_index("ix_tasks_owner_kind_id", "tasks", ["owner", "kind", "id"])
    op.create_index("ix_tasks_status_run_at", "tasks", ["status", "run_at"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_outbox_unsent",
        "outbox",
        ["created_at", "id"],
        postgresql_where=sa.text("sent_at IS NULL"),
        sqlite_where=sa.text("sent_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.drop_table("outbox")
    for index in (
        "ix_tasks_status_run_at",
        "ix_tasks_owner_kind_id",
        "ix_tasks_owner_status_id",
        "ix_tasks_owner_id",
    ):
        op.drop_index(index, table_name="tasks")
    op.drop_table("tasks")
