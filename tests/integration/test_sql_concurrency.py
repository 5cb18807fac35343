"""Races between processes sharing one database: each side has its own engine, as two
Taskport processes would."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import UUID

import pytest

from adapters.storage.sql import SqlStorage
from adapters.system import Uuid7Generator
from application.errors import ConcurrencyConflict
from application.messages import RunTaskMessage
from application.recorder import TaskRecorder
from application.use_cases.promote_due_tasks import PromoteDueTasksHandler
from domain.errors import IllegalTransition
from domain.values import TaskStatus
from tests.factories import T0, FakeClock, HeldRelay, make_task

PROCESSES = 2
CLAIMERS = 8
DUE_TASKS = 30


@pytest.fixture
async def storages(empty_database_url: str) -> AsyncIterator[list[SqlStorage]]:
    """One migrated database seen through the engines of several processes."""
    opened = [SqlStorage.from_url(empty_database_url) for _ in range(PROCESSES)]
    await opened[0].upgrade()
    yield opened
    for storage in opened:
        await storage.close()


@pytest.fixture(params=[True, False], ids=["durable", "not-durable"])
def durable(request: pytest.FixtureRequest) -> bool:
    """Whether claims are committed durably: both ways they conflict alike."""
    return bool(request.param)


async def test_of_claimers_in_several_processes_exactly_one_starts_the_task(
    storages: list[SqlStorage], durable: bool
) -> None:
    task = make_task()
    async with storages[0].unit_of_work() as uow:
        await uow.tasks.add(task)
        await uow.commit()

    async def claim(storage: SqlStorage) -> bool:
        try:
            async with storage.unit_of_work() as uow:
                loaded = await uow.tasks.get(task.id)
                assert loaded is not None
                loaded.start(T0)
                await uow.tasks.save(loaded)
                await uow.commit(durable=durable)
        except (ConcurrencyConflict, IllegalTransition):
            return False
        return True

    wins = await asyncio.gather(*(claim(storages[i % PROCESSES]) for i in range(CLAIMERS)))

    assert sum(wins) == 1
    async with storages[0].unit_of_work() as uow:
        stored = await uow.tasks.get(task.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.version) == (TaskStatus.RUNNING, 1, 2)


async def test_batch_claims_over_overlapping_tasks_each_write_all_or_nothing(
    storages: list[SqlStorage], durable: bool
) -> None:
    """Claimers in several processes each start a batch of tasks that overlaps the
    others' batches (some in the reverse order): every task is started once, and a batch
    is written whole, by its claimer, or not at all."""
    tasks = [make_task() for _ in range(12)]
    async with storages[0].unit_of_work() as uow:
        for task in tasks:
            await uow.tasks.add(task)
        await uow.commit()
    everyone_read = asyncio.Barrier(CLAIMERS)

    async def claim(claimer: int) -> list[UUID] | None:
        batch = [tasks[(claimer + offset) % len(tasks)].id for offset in range(4)]
        if claimer % 2:
            batch.reverse()
        try:
            async with storages[claimer % PROCESSES].unit_of_work() as uow:
                loaded = await uow.tasks.get_many(batch)
                await everyone_read.wait()
                for task_id in batch:
                    loaded[task_id].start(T0, f"claimer-{claimer}")
                    await uow.tasks.save(loaded[task_id])
                await uow.commit(durable=durable)
        except ConcurrencyConflict:
            return None
        return batch

    async with asyncio.timeout(20):
        batches = await asyncio.gather(*(claim(claimer) for claimer in range(CLAIMERS)))

    async with storages[0].unit_of_work() as uow:
        stored = await uow.tasks.get_many([task.id for task in tasks])
    holders = {task_id: task.worker_id for task_id, task in stored.items()}
    assert any(batches)
    for claimer, batch in enumerate(batches):
        mine = {task_id for task_id, holder in holders.items() if holder == f"claimer-{claimer}"}
        assert mine == set(batch or ())
    for task in stored.values():
        expected = (TaskStatus.RUNNING, 1, 2) if task.worker_id else (TaskStatus.QUEUED, 0, 1)
        assert (task.status, task.attempts, task.version) == expected


async def test_two_sweepers_promote_each_due_task_exactly_once(
    storages: list[SqlStorage],
) -> None:
    tasks = [make_task(run_at=T0 + timedelta(seconds=i + 1)) for i in range(DUE_TASKS)]
    async with storages[0].unit_of_work() as uow:
        for task in tasks:
            await uow.tasks.add(task)
        await uow.commit()
    clock = FakeClock(T0 + timedelta(hours=1))

    async def sweep(storage: SqlStorage) -> int:
        recorder = TaskRecorder(Uuid7Generator(), clock, HeldRelay())
        promote = PromoteDueTasksHandler(storage.unit_of_work, recorder, clock)
        promoted = 0
        while await due_left(storage):
            promoted += await promote(limit=4)
        return promoted

    promoted = await asyncio.gather(*(sweep(storage) for storage in storages))

    assert sum(promoted) == DUE_TASKS
    async with storages[0].unit_of_work() as uow:
        stored = [await uow.tasks.get(task.id) for task in tasks]
        messages = await uow.outbox.pending(10 * DUE_TASKS)
    assert {task.status for task in stored if task is not None} == {TaskStatus.QUEUED}
    dispatched = Counter(RunTaskMessage.decode(message.body).task_id for message in messages)
    assert dispatched == Counter({task.id: 1 for task in tasks})


async def due_left(storage: SqlStorage) -> bool:
    async with storage.unit_of_work() as uow:
        return bool(await uow.tasks.due(T0 + timedelta(hours=1), limit=1))


async def test_many_concurrent_writers_all_commit(storages: list[SqlStorage]) -> None:
    """More units than pooled connections, some reading before they write: no unit waits
    for a connection while holding up the others."""
    storage = storages[0]
    existing = [make_task() for _ in range(20)]
    async with storage.unit_of_work() as uow:
        for task in existing:
            await uow.tasks.add(task)
        await uow.commit()

    async def start(task_id: UUID) -> None:
        async with storage.unit_of_work() as uow:
            loaded = await uow.tasks.get(task_id)
            assert loaded is not None
            loaded.start(T0)
            await uow.tasks.save(loaded)
            await uow.commit()

    async def submit() -> None:
        async with storage.unit_of_work() as uow:
            await uow.tasks.add(make_task())
            await uow.commit()

    async with asyncio.timeout(20):
        await asyncio.gather(*(start(task.id) for task in existing), *(submit() for _ in range(20)))
