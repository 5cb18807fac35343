"""Batch submit on SQLite and PostgreSQL: one transaction for the tasks and their messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from dependency_injector import providers
from sqlalchemy import func, select

from adapters.storage.sql import SqlStorage
from adapters.storage.sql.schema import outbox, tasks
from application.errors import IdempotencyKeyReused
from application.use_cases.submit_task import SubmitTask
from application.use_cases.submit_task_batch import SubmitTaskBatch
from entrypoints.container import Container, create_container
from entrypoints.settings import Settings


@pytest.fixture
async def app(empty_database_url: str) -> AsyncIterator[Container]:
    # Sent messages keep their rows, counted with the ones still to send.
    container = create_container(
        Settings(storage_url=empty_database_url, outbox_retention_seconds=3600)
    )
    storage = SqlStorage.from_url(empty_database_url, keep_sent=True)
    container.storage.override(providers.Object(storage))
    await storage.upgrade()
    yield container
    await storage.close()


async def rows(app: Container) -> tuple[int, int]:
    """How many tasks and outbox messages the database holds."""
    storage: SqlStorage = app.storage()
    async with storage.engine.connect() as connection:
        task_count = (await connection.execute(select(func.count()).select_from(tasks))).scalar()
        message_count = (
            await connection.execute(select(func.count()).select_from(outbox))
        ).scalar()
    return task_count or 0, message_count or 0


def item(n: int, key: str | None = None) -> SubmitTask:
    return SubmitTask("alice", "echo", {"n": n}, idempotency_key=key)


async def test_a_batch_stores_each_task_with_its_message(app: Container) -> None:
    answers = await app.submit_task_batch()(
        SubmitTaskBatch(tuple(item(n, f"k{n}" if n % 2 else None) for n in range(500)))
    )
    assert [answer.task.payload for answer in answers] == [{"n": n} for n in range(500)]
    assert await rows(app) == (500, 500)


async def test_a_refused_batch_leaves_nothing_stored(app: Container) -> None:
    await app.submit_task()(item(0, "taken"))
    with pytest.raises(IdempotencyKeyReused):
        await app.submit_task_batch()(SubmitTaskBatch((item(1), item(2, "taken"), item(3))))
    assert await rows(app) == (1, 1)


async def test_concurrent_batches_sharing_keys_each_get_the_one_task_of_a_key(
    app: Container,
) -> None:
    """Every batch races the others for the same keys: each is answered, with the one
    task stored under each key."""
    keys = ["shared", "k0", "k1", "k2"]
    batches = [
        SubmitTaskBatch(tuple(item(k, keys[k]) for k in (0, 1 + n % 3, 1 + (n + 1) % 3)))
        for n in range(24)
    ]
    answered = await asyncio.gather(*(app.submit_task_batch()(batch) for batch in batches))
    by_key: dict[str, set[object]] = {}
    for batch, answers in zip(batches, answered, strict=True):
        for submitted, answer in zip(batch.items, answers, strict=True):
            assert submitted.idempotency_key is not None
            by_key.setdefault(submitted.idempotency_key, set()).add(answer.task.id)
    assert {key: len(ids) for key, ids in by_key.items()} == dict.fromkeys(keys, 1)
    assert await rows(app) == (4, 4)
