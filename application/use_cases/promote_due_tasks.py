"""Move scheduled tasks whose time has come (first runs and retries) into the queue."""

from __future__ import annotations

from application.errors import ConcurrencyConflict
from application.ports.clock import Clock
from application.ports.unit_of_work import UnitOfWorkFactory
from application.recorder import TaskRecorder


class PromoteDueTasksHandler:
    """One sweep: promotes up to ``limit`` due tasks in one transaction and returns how many.

    Safe to run in several processes at once: the repository claims the due tasks it hands
    out, and a task changed concurrently makes the sweep give up until the next one.
    """

    def __init__(self, uow: UnitOfWorkFactory, recorder: TaskRecorder, clock: Clock) -> None:
        self._uow = uow
        self._recorder = recorder
        self._clock = clock

    async def __call__(self, limit: int = 500) -> int:
        now = self._clock.now()
        async with self._uow() as uow:
            due = await uow.tasks.due(now, limit)
            if not due:
                return 0
            for task in due:
                task.enqueue(now)
            try:
                await self._recorder.commit(uow, saved=due)
            except ConcurrencyConflict:
                return 0
        return len(due)
