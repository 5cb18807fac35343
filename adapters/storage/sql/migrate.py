"""Alembic, run programmatically on the storage's own async engine."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.storage.sql.engine import RevisionRefused

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK_ID = 0x7A5C_9017
"""PostgreSQL advisory lock taken by a migration, so replicas starting together take turns."""

_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration, without an ini file: the scripts live in this package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, command.upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run(engine, command.downgrade, revision)


async def current(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def _run(engine: AsyncEngine, step: Callable[[Config, str], None], revision: str) -> None:
    # Alembic keeps the running migration in module globals: one at a time per process.
    turn = _turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with turn, engine.connect() as connection:
        # Across processes, one migration at a time too, each in one transaction.
        if connection.dialect.name == "sqlite":
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        await connection.run_sync(_run_on, step, revision)
        await connection.commit()


def _run_on(connection: Connection, step: Callable[[Config, str], None], revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    try:
        step(config, revision)
    except CommandError as error:
        raise RevisionRefused(revision, str(error)) from error
