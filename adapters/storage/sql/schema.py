"""The tables of the SQL storage, as SQLAlchemy Core metadata.

The migrations in ``migrations/versions`` create this schema; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    Interval,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    column,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from domain.values import DEFAULT_QUEUE, TaskStatus


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime in UTC on every database.

    SQLite has no time zones: values are stored as naive UTC and read back as aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"refusing to store a naive datetime: {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # SQLite keeps datetimes as text, 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's format,
    # so rows written before read the same): one conversion each way instead of this
    # decorator's and then SQLite's DATETIME's, for the dozens of datetimes every task
    # writes and reads.

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def to_text(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError(f"refusing to store a naive datetime: {value!r}")
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

        return to_text

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def from_text(value: str | datetime | None) -> datetime | None:
            if value is None:
                return None
            parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
            return parsed.replace(tzinfo=UTC)

        return from_text


def json_type() -> JSON:
    """JSON, stored as JSONB on PostgreSQL; Python ``None`` is SQL NULL."""
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


metadata = MetaData()

SCHEDULED = text(f"status = '{TaskStatus.SCHEDULED.value}'")
"""The condition of the due sweep's index, in the words the sweep states it."""

IN_A_NAMED_QUEUE = text(f"queue <> '{DEFAULT_QUEUE}'")
"""The condition of the queue index; a query that reads the index states it in these words,
so that the planner sees it holds whatever the queue bound to the statement."""

SCHEMA_REVISION = "0015"
"""The newest migration's revision: the schema this code needs (a test checks that it is
Alembic's head)."""

ALEMBIC_VERSION = table("alembic_version", column("version_num", String(32)))
"""Where Alembic records the revision of a database (Alembic's table, not in ``metadata``)."""

tasks = Table(
    "tasks",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("kind", String(100), nullable=False),
    Column("payload", json_type()),
    Column("status", String(16), nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("retry_base_delay", Interval(), nullable=False),
    Column("retry_factor", Double(), nullable=False),
    Column("retry_max_delay", Interval(), nullable=False),
    Column("timeout", Interval(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("run_at", UtcDateTime()),
    Column("idempotency_key", String(255)),
    Column("request_fingerprint", String(128)),
    Column("attempts", Integer, nullable=False),
    Column("started_at", UtcDateTime()),
    Column("finished_at", UtcDateTime()),
    Column("lease_expires_at", UtcDateTime()),
    Column("cancel_requested", Boolean(), nullable=False),
    Column("result", json_type()),
    Column("error_type", String(200)),
    Column("error_message", String()),
    Column("error_retryable", Boolean()),
    Column("version", Integer, nullable=False),
    Column("progress_fraction", Double()),
    Column("progress_message", String()),
    Column("progress_updated_at", UtcDateTime()),
    Column("worker_id", String(200)),
    Column("callback_url", String(2048)),
    Column("schedule_id", Uuid()),
    Column("request_id", String(128)),
    Column("expires_at", UtcDateTime()),
    Column("queue", String(40), nullable=False, server_default=text("'default'")),
    # One task per (owner, key). On PostgreSQL a partial unique index, which the tasks
    # without a key (most) never write; SQLite keeps the table's constraint it was built with.
    UniqueConstraint("owner", "idempotency_key", name="uq_tasks_owner_idempotency_key").ddl_if(
        dialect="sqlite"
    ),
    Index(
        "ix_tasks_owner_idempotency_key",
        "owner",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ).ddl_if(dialect="postgresql"),
    Index("ix_tasks_owner_id", "owner", "id"),
    Index("ix_tasks_owner_status_id", "owner", "status", "id"),
    Index("ix_tasks_owner_kind_id", "owner", "kind", "id"),
    # Partial: a task of the default queue, the most written, does not write it (and the
    # default queue's pages read the owner's index).
    Index(
        "ix_tasks_owner_queue_id",
        "owner",
        "queue",
        "id",
        postgresql_where=IN_A_NAMED_QUEUE,
        sqlite_where=IN_A_NAMED_QUEUE,
    ),
    Index(
        "ix_tasks_owner_schedule_id_id",
        "owner",
        "schedule_id",
        "id",
        postgresql_where=text("schedule_id IS NOT NULL"),
        sqlite_where=text("schedule_id IS NOT NULL"),
    ),
    # The due sweep: only the SCHEDULED tasks are in it.
    Index(
        "ix_tasks_status_run_at",
        "status",
        "run_at",
        postgresql_where=SCHEDULED,
        sqlite_where=SCHEDULED,
    ),
    # The recovery sweep: forgotten QUEUED tasks (and RUNNING ones, whose lease it checks).
    Index("ix_tasks_status_updated_at", "status", "updated_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("topic", String(200), nullable=False),
    Column("body", LargeBinary(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime()),
    Index(
        "ix_outbox_unsent",
        "created_at",
        "id",
        postgresql_where=text("sent_at IS NULL"),
        sqlite_where=text("sent_at IS NULL"),
    ),
    # The prune: sent messages, oldest first.
    Index(
        "ix_outbox_sent",
        "sent_at",
        postgresql_where=text("sent_at IS NOT NULL"),
        sqlite_where=text("sent_at IS NOT NULL"),
    ),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("last_heartbeat", UtcDateTime(), nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("running", Integer, nullable=False),
    # Comma-separated: every queue name is a word of a-z, 0-9, '_', '-'.
    Column("queues", String(2000), nullable=False, server_default=text("'default'")),
    Column("queue_limits", String(2000), nullable=False, server_default=text("''")),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)

schedules = Table(
    "schedules",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("name", String(100)),
    Column("cron", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("kind", String(100), nullable=False),
    Column("payload", json_type()),
    Column("max_attempts", Integer),
    Column("timeout_seconds", Double()),
    Column("callback_url", String(2048)),
    Column("expires_after_seconds", Double()),
    Column("queue", String(40), nullable=False, server_default=text("'default'")),
    Column("paused", Boolean(), nullable=False),
    Column("next_run_at", UtcDateTime(), nullable=False),
    Column("last_run_at", UtcDateTime()),
    Column("last_task_id", Uuid()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("owner", "name", name="uq_schedules_owner_name"),
    Index("ix_schedules_owner_id", "owner", "id"),
    Index("ix_schedules_paused_next_run_at", "paused", "next_run_at"),
)
