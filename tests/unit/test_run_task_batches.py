"""Concurrent runs claim and record their tasks in shared units of work; a batch that
conflicts is written again task by task, and nothing runs twice or is left RUNNING."""

from __future__ import annotations

import asyncio
import collections
from typing import Any
from uuid import UUID

import pytest

from adapters.handlers.registry import Kind, KindRegistry
from adapters.storage.memory import MemoryStorage
from adapters.system import Uuid7Generator
from application.errors import ConcurrencyConflict
from application.recorder import TaskRecorder
from application.submissions import NewTasks, SubmitTask, TaskDefaults
from application.use_cases.run_task import Outcome, RunResult, RunTask, RunTaskHandler
from domain.values import TaskStatus
from tests.factories import FakeClock, HeldRelay

RUNS: collections.Counter[UUID] = collections.Counter()


async def counted(payload: Any, context: Any) -> Any:
    RUNS[context.task_id] += 1
    await asyncio.sleep(0)
    return payload


REGISTRY = KindRegistry([Kind("counted", counted)])


class Storage:
    """The in-memory storage, counting the units of work that write more than one task.
    The next ``conflicts`` of them raise ``ConcurrencyConflict``, after writing their first
    task when ``in_part`` (as a storage without transactions may)."""

    def __init__(self, conflicts: int = 0, in_part: bool = False) -> None:
        self.storage = MemoryStorage()
        self.batches = 0
        self.conflicts = conflicts
        self.in_part = in_part

    def unit_of_work(self) -> Any:
        uow = self.storage.unit_of_work()
        commit = uow.commit

        async def batched(*, durable: bool = True) -> None:
            saved = list(uow.saved.values())
            if len(saved) > 1:
                self.batches += 1
                if self.conflicts:
                    self.conflicts -= 1
                    if self.in_part:
                        uow.saved = {saved[0].id: saved[0]}
                        await commit(durable=durable)
                    raise ConcurrencyConflict(saved[-1].id)
            await commit(durable=durable)

        uow.commit = batched
        return uow


async def queued(storage: Storage, count: int) -> list[UUID]:
    clock = FakeClock()
    new_tasks = NewTasks(REGISTRY, clock, Uuid7Generator(), TaskDefaults())
    tasks = [new_tasks.build(SubmitTask("alice", "counted", {"n": n})) for n in range(count)]
    async with storage.storage.unit_of_work() as uow:
        for task in tasks:
            await uow.tasks.add(task)
        await uow.commit()
    return [task.id for task in tasks]


def handler(storage: Storage) -> RunTaskHandler:
    clock = FakeClock()
    recorder = TaskRecorder(Uuid7Generator(), clock, HeldRelay())
    return RunTaskHandler(storage.unit_of_work, REGISTRY, recorder, clock, worker_id="w1")


async def run_all(storage: Storage, ids: list[UUID]) -> list[RunResult]:
    run = handler(storage)
    return await asyncio.gather(*(run(RunTask(task_id)) for task_id in ids))


def finished(storage: Storage, ids: list[UUID]) -> list[tuple[TaskStatus, int]]:
    return [
        (storage.storage.tasks[task_id].status, storage.storage.tasks[task_id].attempts)
        for task_id in ids
    ]


async def test_concurrent_runs_share_units_of_work() -> None:
    storage = Storage()
    ids = await queued(storage, 30)
    results = await run_all(storage, ids)
    assert {result.outcome for result in results} == {Outcome.RAN}
    assert finished(storage, ids) == [(TaskStatus.SUCCEEDED, 1)] * 30
    assert all(RUNS[task_id] == 1 for task_id in ids)
    assert storage.batches >= 2  # claims and outcomes, each in fewer units than tasks


async def test_a_duplicate_delivery_in_the_same_batch_runs_nothing() -> None:
    storage = Storage()
    ids = await queued(storage, 5)
    results = await run_all(storage, [*ids, ids[0]])
    assert [result.outcome for result in results[:5]] == [Outcome.RAN] * 5
    assert results[5].outcome in (Outcome.BUSY, Outcome.NOTHING_TO_DO)
    assert RUNS[ids[0]] == 1
    assert finished(storage, ids) == [(TaskStatus.SUCCEEDED, 1)] * 5


@pytest.mark.parametrize(
    "in_part",
    [False, True],
    ids=["nothing written", "written in part (the written tasks count as written)"],
)
async def test_a_batch_that_conflicts_is_written_task_by_task(in_part: bool) -> None:
    storage = Storage(conflicts=2, in_part=in_part)
    ids = await queued(storage, 10)
    results = await run_all(storage, ids)
    # None is taken for another worker's (BUSY) and none runs a second attempt.
    assert {result.outcome for result in results} == {Outcome.RAN}
    assert finished(storage, ids) == [(TaskStatus.SUCCEEDED, 1)] * 10
    assert all(RUNS[task_id] == 1 for task_id in ids)
    assert storage.conflicts == 0
