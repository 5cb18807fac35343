"""SQL storage: SQLite (aiosqlite) and PostgreSQL (asyncpg) through SQLAlchemy Core."""

from adapters.storage.sql.engine import RevisionRefused
from adapters.storage.sql.storage import (
    SqlOutbox,
    SqlStorage,
    SqlTaskRepository,
    SqlUnitOfWork,
    SqlWorkerRegistry,
)

__all__ = [
    "RevisionRefused",
    "SqlOutbox",
    "SqlStorage",
    "SqlTaskRepository",
    "SqlUnitOfWork",
    "SqlWorkerRegistry",
]
