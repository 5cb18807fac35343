"""Engines for SQLite (aiosqlite) and PostgreSQL (asyncpg), and the translation of driver
errors into application errors: nothing above this package sees a driver type."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from application.errors import StorageRefused, StorageUnavailable

logger = logging.getLogger("taskport.storage")

DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
CONNECT_TIMEOUT_SECONDS = 3
POOL_TIMEOUT_SECONDS = 10
POOL_SIZE = 10
POOL_OVERFLOW = 10
STATEMENT_TIMEOUT_SECONDS = 30
"""A server that stops answering mid-statement is reported unavailable, not waited on."""
SQLITE_BUSY_TIMEOUT_MS = 5000


def async_url(url: str) -> URL:
    """``postgresql://`` becomes ``postgresql+asyncpg://``, ``sqlite:///p`` becomes
    ``sqlite+aiosqlite:///p``; a URL naming its driver is kept as it is."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in DRIVERS:
        raise ValueError(f"not an SQL storage URL: {parsed.render_as_string()}")
    if parsed.drivername == backend:
        parsed = parsed.set(drivername=DRIVERS[backend])
    return parsed


def create_engine(url: str, pool_size: int = POOL_SIZE) -> AsyncEngine:
    """An engine that keeps ``pool_size`` connections open, and opens up to
    ``POOL_OVERFLOW`` more while more are wanted at once. Every process may hold that many
    connections: the database's own limit (``max_connections``) must leave room for all.

    Connections are not pinged before each use, which would cost a round trip per unit of
    work: the first statement that finds the database gone fails (``StorageUnavailable``),
    and SQLAlchemy then discards every connection opened before, so the next units
    reconnect by themselves once the database is back.

    ``ValueError`` for a URL SQLAlchemy cannot read, or whose driver it does not have.
    """
    try:
        return _engine(async_url(url), pool_size)
    except exc.ArgumentError as error:
        raise ValueError(str(error)) from error


def _engine(parsed: URL, pool_size: int) -> AsyncEngine:
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, pool_size)
    return create_async_engine(
        parsed,
        pool_recycle=1800,
        pool_size=pool_size,
        max_overflow=POOL_OVERFLOW,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={
            "timeout": CONNECT_TIMEOUT_SECONDS,
            "command_timeout": STATEMENT_TIMEOUT_SECONDS,
        },
    )


def _sqlite_engine(url: URL, pool_size: int) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, pool_size=pool_size, pool_timeout=30)
    event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is turned off: reads run outside transactions (WAL
    # readers never block) and writes start with an explicit BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        "foreign_keys=ON",
        "synchronous=NORMAL",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


class RevisionRefused(ValueError):
    """A migration asked for a revision that Alembic cannot reach from the schema's own:
    one it does not know, or one on the other side of a downgrade or an upgrade."""

    def __init__(self, revision: str, reason: str) -> None:
        self.revision = revision
        super().__init__(f"cannot migrate to {revision}: {reason}")


_UNAVAILABLE = (OSError, TimeoutError, exc.OperationalError, exc.InterfaceError, exc.TimeoutError)


@contextmanager
def translated_errors() -> Iterator[None]:
    """Driver and connection errors become ``StorageUnavailable`` (``StorageRefused`` when
    the database refuses the settings).

    Integrity errors are left to the caller, which knows what they mean.
    """
    try:
        yield
    except exc.IntegrityError:
        raise
    except exc.DBAPIError as error:
        if _refuses_deployment(error):
            raise StorageRefused(_reason(error)) from error
        unavailable = isinstance(error, _UNAVAILABLE) or error.connection_invalidated
        if not (unavailable or _sqlstate(error).startswith(_UNAVAILABLE_STATES)):
            logger.error("unexpected database error", exc_info=error)
        raise StorageUnavailable(_reason(error)) from error
    except _UNAVAILABLE as error:
        raise StorageUnavailable(_reason(error)) from error
    except exc.SQLAlchemyError as error:
        logger.error("unexpected database error", exc_info=error)
        raise StorageUnavailable(_reason(error)) from error
    except Exception as error:
        if _is_driver_error(error):
            if _is_server_refusal(error):
                logger.error("unexpected database error", exc_info=error)
            raise StorageUnavailable(_reason(error)) from error
        raise


def _refuses_deployment(error: exc.DBAPIError) -> bool:
    """PostgreSQL refused the connection for what the settings name: a user or password
    (SQLSTATE class 28) or a database (3D000) it does not know."""
    state = _sqlstate(error)
    return state.startswith("28") or state == "3D000"


def _sqlstate(error: exc.DBAPIError) -> str:
    """PostgreSQL's SQLSTATE of the error, as SQLAlchemy's asyncpg adapter or asyncpg
    itself carries it; empty when there is none (SQLite)."""
    original = error.orig
    state = getattr(original, "sqlstate", None) or getattr(original.__cause__, "sqlstate", None)
    return state if isinstance(state, str) else ""


def _is_driver_error(error: Exception) -> bool:
    """asyncpg and sqlite3 errors that escape SQLAlchemy's wrapping (seen on connect)."""
    module = type(error).__module__
    return module.startswith(("asyncpg", "sqlite3", "aiosqlite"))


_UNAVAILABLE_STATES = ("08", "53", "57")
"""SQLSTATE classes of a server that cannot serve now: connection exceptions, insufficient
resources, operator intervention (a shutdown or a start under way, a cancelled
statement). SQLAlchemy wraps some of them as a plain ``DBAPIError``."""


def _is_server_refusal(error: Exception) -> bool:
    """PostgreSQL refused a statement for what it says (asyncpg's errors, of the statements
    run past SQLAlchemy), not for being unavailable: a bug to log, as SQLAlchemy's are."""
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and not state.startswith(_UNAVAILABLE_STATES)


def _reason(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return f"{type(original).__name__}: {text[0] if text else 'no details'}"
