"""Group commit: concurrent submits share units of work, and each learns how its own ended."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from adapters.handlers.builtin import BUILTIN_KINDS
from adapters.handlers.registry import KindRegistry
from adapters.storage.memory import MemoryStorage
from adapters.system import Uuid7Generator
from application import correlation
from application.errors import StorageUnavailable
from application.group_commit import GroupCommit
from application.messages import RunTaskMessage
from application.recorder import TaskRecorder
from application.submissions import NewTasks, SubmitTask, TaskDefaults
from domain.task import Task
from tests.factories import FakeClock, HeldRelay

_new_tasks = NewTasks(KindRegistry(BUILTIN_KINDS), FakeClock(), Uuid7Generator(), TaskDefaults())


def make_task() -> Task:
    """A task as submitted: with the event that calls for its dispatch message."""
    return _new_tasks.build(SubmitTask("alice", "echo", {"n": 1}))


class CountedStorage:
    """The in-memory storage, counting commits; the first ``failures`` of them fail."""

    def __init__(self, failures: int = 0) -> None:
        self.storage = MemoryStorage()
        self.commits = 0
        self.failures = failures

    def unit_of_work(self) -> Any:
        uow = self.storage.unit_of_work()
        commit = uow.commit

        async def counted(*, durable: bool = True) -> None:
            self.commits += 1
            if self.commits <= self.failures:
                raise StorageUnavailable("down")
            await commit(durable=durable)

        uow.commit = counted
        return uow

    async def stored(self) -> tuple[int, int]:
        async with self.storage.unit_of_work() as uow:
            return len(self.storage.tasks), await uow.outbox.backlog()


def group_commit(storage: CountedStorage, **options: Any) -> GroupCommit:
    recorder = TaskRecorder(Uuid7Generator(), FakeClock(), HeldRelay())
    return GroupCommit(storage.unit_of_work, recorder, **options)


async def test_concurrent_tasks_share_units_of_work() -> None:
    storage = CountedStorage()
    commit = group_commit(storage, committers=2)
    await asyncio.gather(*(commit.add(make_task()) for _ in range(50)))
    assert await storage.stored() == (50, 50)
    assert storage.commits < 50


async def test_a_group_never_exceeds_its_limit() -> None:
    storage = CountedStorage()
    commit = group_commit(storage, max_group=10, committers=1)
    await asyncio.gather(*(commit.add(make_task()) for _ in range(35)))
    assert await storage.stored() == (35, 35)
    assert storage.commits == 4


async def test_a_lone_task_commits_at_once() -> None:
    storage = CountedStorage()
    await group_commit(storage).add(make_task())
    assert (await storage.stored(), storage.commits) == ((1, 1), 1)


async def test_a_failed_commit_fails_each_task_of_its_group_and_the_next_group_commits() -> None:
    storage = CountedStorage(failures=1)
    commit = group_commit(storage, committers=1)
    results = await asyncio.gather(
        *(commit.add(make_task()) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(result, StorageUnavailable) for result in results)
    assert await storage.stored() == (0, 0)
    await asyncio.gather(*(commit.add(make_task()) for _ in range(5)))
    assert await storage.stored() == (5, 5)


async def test_a_caller_that_gives_up_does_not_stop_the_others() -> None:
    storage = CountedStorage()
    commit = group_commit(storage, committers=1)
    abandoned = asyncio.create_task(commit.add(make_task()))
    others = [asyncio.create_task(commit.add(make_task())) for _ in range(3)]
    await asyncio.sleep(0)
    abandoned.cancel()
    await asyncio.gather(*others)
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    assert (await storage.stored())[0] >= 3


class RequestIdsLogged(logging.Handler):
    """The request id in effect when each task's event was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.by_task: dict[str, str | None] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.by_task[record.task_id] = correlation.request_id.get()  # type: ignore[attr-defined]


async def test_each_task_keeps_the_request_id_of_its_submit() -> None:
    storage = CountedStorage()
    commit = group_commit(storage, committers=1)
    submitted: dict[str, Task] = {}

    async def submit_in_request(request_id: str) -> None:
        correlation.request_id.set(request_id)
        submitted[request_id] = make_task()
        await commit.add(submitted[request_id])

    logged = RequestIdsLogged()
    events_log = logging.getLogger("taskport.events")
    level = events_log.level
    events_log.addHandler(logged)
    events_log.setLevel(logging.INFO)
    try:
        await asyncio.gather(*(submit_in_request(f"req-{n}") for n in range(5)))
    finally:
        events_log.removeHandler(logged)
        events_log.setLevel(level)
    assert storage.commits < 5
    messages = [RunTaskMessage.decode(m.body) for m in storage.storage.outbox.values()]
    expected = {request_id: task.id for request_id, task in submitted.items()}
    assert {m.request_id: m.task_id for m in messages} == expected
    assert logged.by_task == {str(task_id): request_id for request_id, task_id in expected.items()}
