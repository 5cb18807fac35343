"""The shared shape of an owner's command on an existing task (cancel, retry)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from application.errors import ConcurrencyConflict, TaskNotFound
from application.ports.clock import Clock
from application.ports.unit_of_work import UnitOfWorkFactory
from application.recorder import TaskRecorder
from domain.task import Task

CONFLICT_RETRIES = 5


class OwnedTaskChange:
    """Reads the owner's task, applies ``change`` and commits; returns the committed task.

    Raises ``TaskNotFound`` (also for another owner's task) and the domain's
    ``IllegalTransition`` when the task's state forbids the change. A concurrent change of
    the same task (a worker starting it, say) is resolved by reading it again.
    """

    def __init__(self, uow: UnitOfWorkFactory, recorder: TaskRecorder, clock: Clock) -> None:
        self._uow = uow
        self._recorder = recorder
        self._clock = clock

    def change(self, task: Task, now: datetime) -> None:
        raise NotImplementedError

    async def apply(self, owner: str, task_id: UUID) -> Task:
        for _ in range(CONFLICT_RETRIES):
            async with self._uow() as uow:
                task = await uow.tasks.get_owned(owner, task_id)
                if task is None:
                    raise TaskNotFound(task_id)
                self.change(task, self._clock.now())
                try:
                    await self._recorder.commit(uow, saved=[task])
                except ConcurrencyConflict:
                    continue
                return task
        raise ConcurrencyConflict(task_id)
