"""The statements the SQL storage runs on asyncpg itself, past SQLAlchemy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.storage.sql import SqlStorage
from adapters.storage.sql.asyncpg_direct import AsyncpgStatement
from application.errors import StorageUnavailable


def test_named_parameters_become_positional_ones_each_name_one_number() -> None:
    statement = AsyncpgStatement("SELECT CAST(:a AS int) + :b::int, :a, ':' || :c_d")
    assert statement.sql == "SELECT CAST($1 AS int) + $2::int, $1, ':' || $3"
    assert statement.names == ["a", "b", "c_d"]


@pytest.fixture
async def storage(empty_postgres_url: str) -> AsyncIterator[SqlStorage]:
    """One pooled connection, reused by every unit unless it is discarded."""
    opened = SqlStorage.from_url(empty_postgres_url, pool_size=1)
    yield opened
    await opened.close()


BACKEND = AsyncpgStatement("SELECT pg_backend_pid() AS pid")


async def backend(storage: SqlStorage) -> int:
    async with storage.unit_of_work() as uow:
        rows = await uow.fetch_direct(BACKEND, {})
    return int(rows[0]["pid"])


async def test_a_statement_that_fails_is_reported_and_its_connection_not_reused(
    storage: SqlStorage, caplog: pytest.LogCaptureFixture
) -> None:
    first = await backend(storage)
    assert await backend(storage) == first  # the pool hands the same connection back
    with pytest.raises(StorageUnavailable):
        async with storage.unit_of_work() as uow:
            await uow.fetch_direct(AsyncpgStatement("SELECT 1 / :zero"), {"zero": 0})
    assert "unexpected database error" in caplog.text  # a refusal, not an outage: logged
    assert await backend(storage) != first


async def test_a_statement_after_a_failed_one_in_the_same_unit_runs_on_a_new_connection(
    storage: SqlStorage,
) -> None:
    first = await backend(storage)
    async with storage.unit_of_work() as uow:
        with pytest.raises(StorageUnavailable):
            await uow.fetch_direct(AsyncpgStatement("SELECT 1 / :zero"), {"zero": 0})
        rows = await uow.fetch_direct(BACKEND, {})
    assert rows[0]["pid"] != first
