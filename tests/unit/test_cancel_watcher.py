"""The watcher that looks for cancel requests while a handler runs."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from adapters.handlers.registry import Kind, KindRegistry
from adapters.storage.memory import MemoryStorage
from adapters.system import Uuid7Generator
from application.recorder import TaskRecorder
from application.submissions import NewTasks, SubmitTask, TaskDefaults
from application.use_cases.run_task import Outcome, RunTask, RunTaskHandler
from domain.values import TaskStatus
from tests.factories import FakeClock, HeldRelay
from tests.polling import eventually


class LookedAt:
    """The in-memory storage; the first read of a RUNNING task (the watcher's look) takes a
    while, and tells ``looking`` it began."""

    def __init__(self) -> None:
        self.storage = MemoryStorage()
        self.looking = asyncio.Event()
        self.looks: list[str] = []

    def unit_of_work(self) -> Any:
        uow = self.storage.unit_of_work()
        get = uow.tasks.get

        async def slow_get(task_id: Any) -> Any:
            task = await get(task_id)
            if task is not None and task.status is TaskStatus.RUNNING and not self.looks:
                self.looks.append("began")
                self.looking.set()
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    self.looks.append("cancelled")
                    raise
                self.looks.append("ended")
            return task

        uow.tasks.get = slow_get
        return uow


async def test_a_look_under_way_when_the_handler_ends_is_not_cancelled() -> None:
    """Cancelled mid-look, a unit of work on SQL gives its connection back under
    cancellation: the pool drops it and logs an error."""
    storage = LookedAt()

    async def handler(payload: Any, context: Any) -> Any:
        await storage.looking.wait()
        return "done"

    registry = KindRegistry([Kind("waits", handler)])
    clock = FakeClock()
    task = NewTasks(registry, clock, Uuid7Generator(), TaskDefaults()).build(
        SubmitTask("alice", "waits", {})
    )
    async with storage.storage.unit_of_work() as uow:
        await uow.tasks.add(task)
        await uow.commit()
    run = RunTaskHandler(
        storage.unit_of_work,
        registry,
        TaskRecorder(Uuid7Generator(), clock, HeldRelay()),
        clock,
        cancel_poll_interval=timedelta(milliseconds=10),
    )

    result = await run(RunTask(task.id))

    assert (result.outcome, result.status) == (Outcome.RAN, TaskStatus.SUCCEEDED)
    await eventually(lambda: len(storage.looks) == 2)
    assert storage.looks == ["began", "ended"]
