"""Real databases for tests: a PostgreSQL database of its own per test run (created on
the local server, started when it is down, dropped at the end) and SQLite files."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from adapters.storage.sql import SqlStorage

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
ADMIN_DATABASE = "test"


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Runs a coroutine to the end on its own loop, even when called from a running one
    (fixtures are set up from async fixtures too)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES_SERVER}/{ADMIN_DATABASE}", timeout=3)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _start_postgres() -> None:
    versions = sorted(path.name for path in Path("/etc/postgresql").iterdir())
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False,
        capture_output=True,
    )


@retry(
    retry=retry_if_exception_type((OSError, asyncpg.CannotConnectNowError)),
    stop=stop_after_delay(30),
    wait=wait_fixed(0.2),
    reraise=True,
)
def _wait_for_postgres() -> None:
    _run(_admin("SELECT 1"))


def ensure_postgres() -> None:
    """Starts the local PostgreSQL cluster when nothing answers on its port."""
    try:
        _run(_admin("SELECT 1"))
    except (OSError, asyncpg.CannotConnectNowError):
        _start_postgres()
        _wait_for_postgres()


def create_database() -> str:
    name = f"taskport_test_{secrets.token_hex(6)}"
    _run(_admin(f'CREATE DATABASE "{name}"'))
    return name


def drop_database(name: str) -> None:
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    ensure_postgres()
    return POSTGRES_SERVER


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A database of this test run's own, migrated to head."""
    name = create_database()
    url = f"{postgres_server}/{name}"

    async def migrate() -> None:
        storage = SqlStorage.from_url(url)
        await storage.upgrade()
        await storage.close()

    _run(migrate())
    yield url
    drop_database(name)


@pytest.fixture
def empty_postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = create_database()
    yield f"{postgres_server}/{name}"
    drop_database(name)


async def emptied(storage: SqlStorage) -> SqlStorage:
    """The storage with no tasks and no messages, for a test that needs a clean slate."""
    async with storage.engine.begin() as connection:
        await connection.exec_driver_sql("TRUNCATE tasks, outbox, workers, schedules, leases")
    return storage


async def migrated_sqlite(path: Path) -> SqlStorage:
    storage = SqlStorage.from_url(f"sqlite:///{path}")
    await storage.upgrade()
    return storage
