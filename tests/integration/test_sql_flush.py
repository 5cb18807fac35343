"""Commits that need not be durable (``commit(durable=False)``), on PostgreSQL: they do not
wait for the flush of their transaction, and leave the setting as it was after it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from adapters.storage.sql import SqlStorage
from adapters.storage.sql.task_writes import NO_FLUSH
from tests.factories import T0, make_task


@pytest.fixture
async def storage(empty_postgres_url: str) -> AsyncIterator[SqlStorage]:
    """A migrated database reached through one pooled connection, reused by every unit."""
    opened = SqlStorage.from_url(empty_postgres_url, pool_size=1)
    await opened.upgrade()
    yield opened
    await opened.close()


async def synchronous_commit(storage: SqlStorage) -> str:
    rows = await storage.read_alone(text("SHOW synchronous_commit"))
    return str(rows[0][0])


async def test_the_condition_turns_off_the_wait_for_the_flush_until_its_transaction_ends(
    storage: SqlStorage,
) -> None:
    async with storage.engine.connect() as connection:
        assert (await connection.execute(text(f"SELECT {NO_FLUSH}"))).scalar() is True
        assert (await connection.execute(text("SHOW synchronous_commit"))).scalar() == "off"
        await connection.commit()
        assert (await connection.execute(text("SHOW synchronous_commit"))).scalar() == "on"


async def test_a_claim_that_need_not_be_durable_leaves_the_connection_flushing(
    storage: SqlStorage,
) -> None:
    tasks = [make_task(), make_task()]
    async with storage.unit_of_work() as uow:
        for task in tasks:
            await uow.tasks.add(task)
        await uow.commit()
    for claimed in ([tasks[0]], tasks):  # one task, then a batch: each its own statement
        async with storage.unit_of_work() as uow:
            loaded = await uow.tasks.get_many([task.id for task in claimed])
            for task in loaded.values():
                if task.attempts == 0:
                    task.start(T0)
                else:
                    task.succeed(T0, None)
                await uow.tasks.save(task)
            await uow.commit(durable=False)
        assert await synchronous_commit(storage) == "on"
    async with storage.unit_of_work() as uow:
        stored = await uow.tasks.get_many([task.id for task in tasks])
    assert [stored[task.id].version for task in tasks] == [3, 2]
