"""The WorkerRegistry port's contract, and the recovery query that reads it, for every
storage."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs

from application.ports.worker_registry import WorkerRecord
from tests.factories import T0, make_task


def worker(
    worker_id: str,
    *,
    started: datetime = T0,
    beat: datetime = T0,
    running: int = 0,
    queues: tuple[str, ...] = ("default",),
) -> Any:
    return WorkerRecord(
        id=worker_id,
        host="host-1",
        pid=1234,
        started_at=started,
        last_heartbeat=beat,
        concurrency=8,
        running=running,
        queues=queues,
    )


async def test_a_heartbeat_registers_the_worker_and_reads_back(storage: Any) -> None:
    registry = storage.workers()
    record = worker("w-1", running=3)
    await registry.heartbeat(record)
    assert list(await registry.list()) == [record]
    assert (await registry.list())[0].last_heartbeat.tzinfo is not None


async def test_a_worker_reads_back_with_the_queues_it_takes(storage: Any) -> None:
    registry = storage.workers()
    record = worker("w-1", queues=("images", "reports-2_b"))
    await registry.heartbeat(record)
    assert list(await registry.list()) == [record]


async def test_a_worker_reads_back_with_the_limits_of_its_queues(storage: Any) -> None:
    registry = storage.workers()
    record = attrs.evolve(
        worker("w-1", queues=("default", "images", "reports-2_b")),
        queue_limits={"images": 4, "reports-2_b": 1000},
    )
    await registry.heartbeat(record)
    [listed] = await registry.list()
    assert (listed, listed.queue_limits) == (record, {"images": 4, "reports-2_b": 1000})


async def test_a_later_heartbeat_replaces_the_record(storage: Any) -> None:
    registry = storage.workers()
    await registry.heartbeat(worker("w-1", running=3))
    later = worker("w-1", beat=T0 + timedelta(seconds=5), running=1)
    await registry.heartbeat(later)
    assert list(await registry.list()) == [later]


async def test_workers_are_listed_most_recently_started_first(storage: Any) -> None:
    registry = storage.workers()
    for n in (2, 0, 1):
        await registry.heartbeat(worker(f"w-{n}", started=T0 + timedelta(minutes=n)))
    assert [w.id for w in await registry.list()] == ["w-2", "w-1", "w-0"]


async def test_remove_forgets_the_worker_and_ignores_unknown_ones(storage: Any) -> None:
    registry = storage.workers()
    await registry.heartbeat(worker("w-1"))
    await registry.heartbeat(worker("w-2"))
    await registry.remove("w-1")
    await registry.remove("never-registered")
    assert [w.id for w in await registry.list()] == ["w-2"]


async def test_prune_forgets_only_workers_silent_since_before(storage: Any) -> None:
    registry = storage.workers()
    await registry.heartbeat(worker("old", beat=T0 - timedelta(hours=2)))
    await registry.heartbeat(worker("recent", beat=T0))
    assert await registry.prune(T0 - timedelta(hours=1)) == 1
    assert [w.id for w in await registry.list()] == ["recent"]
    assert await registry.prune(T0 - timedelta(hours=1)) == 0


async def test_stalled_finds_running_tasks_of_lost_and_unknown_workers(storage: Any) -> None:
    registry = storage.workers()
    await registry.heartbeat(worker("alive", beat=T0))
    await registry.heartbeat(worker("lost", beat=T0 - timedelta(minutes=1)))
    tasks = {}
    for worker_id in ("alive", "lost", "unknown", None):
        task = make_task(timeout=timedelta(hours=1))
        task.start(T0, worker_id)
        task.pull_events()
        tasks[worker_id] = task
    async with storage.unit_of_work() as uow:
        for task in tasks.values():
            await uow.tasks.add(task)
        await uow.commit()
    async with storage.unit_of_work() as uow:
        # Without the worker judgement, only leases count: none has ended.
        assert await uow.tasks.stalled(T0, T0 - timedelta(hours=1), 10) == []
    async with storage.unit_of_work() as uow:
        found = await uow.tasks.stalled(
            T0, T0 - timedelta(hours=1), 10, workers_lost_before=T0 - timedelta(seconds=15)
        )
        assert {task.worker_id for task in found} == {"lost", "unknown"}
