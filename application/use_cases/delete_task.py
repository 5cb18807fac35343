"""Delete a finished task: its payload, its result and its idempotency key are gone."""

from __future__ import annotations

import asyncio
from uuid import UUID

from attrs import frozen

from application.errors import ConcurrencyConflict, TaskNotFound
from application.ports.unit_of_work import UnitOfWorkFactory

CONFLICT_RETRIES = 5
FIRST_LOOK_AGAIN = 0.025
"""Seconds before looking again at a finished task that was kept; each next wait is twice
as long (0.375 s in all). The relay marks a message sent some 20 ms after its publish."""


@frozen
class DeleteTask:
    owner: str
    task_id: UUID


class DeleteTaskHandler:
    """Deletes the owner's task once it has finished (SUCCEEDED, FAILED or CANCELLED).

    Raises ``TaskNotFound`` (also for another owner's task, and for one deleted already)
    and the domain's ``IllegalTransition`` for a task that has not finished: it is
    cancelled first. The deletion and its check are one step of the storage, so a task
    retried at the same moment is either deleted before, or kept.
    """

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, command: DeleteTask) -> None:
        for attempt in range(CONFLICT_RETRIES):
            if attempt:
                await asyncio.sleep(FIRST_LOOK_AGAIN * 2 ** (attempt - 1))
            async with self._uow() as uow:
                if await uow.tasks.delete_finished(command.owner, command.task_id):
                    return
                task = await uow.tasks.get_owned(command.owner, command.task_id)
            if task is None:
                raise TaskNotFound(command.task_id)
            task.check_deletable()
            # Finished, yet kept: it changed in between, or its storage still publishes the
            # messages of its last change (MongoDB, for a task that just ran). Looked at
            # again in a moment.
        raise ConcurrencyConflict(command.task_id)
