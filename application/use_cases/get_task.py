"""Read one task of its owner, at once or once it finished."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID

from attrs import field, frozen

from application.completions import Completions
from application.errors import TaskNotFound
from application.ports.unit_of_work import UnitOfWorkFactory
from domain.task import Task

MAX_WAIT = timedelta(seconds=60)
FIRST_READ_AGAIN = 0.05
"""Seconds before a waiter reads the task again, doubling up to ``LAST_READ_AGAIN``."""
LAST_READ_AGAIN = 1.0


def _wait(value: timedelta) -> timedelta:
    if not timedelta(0) <= value <= MAX_WAIT:
        raise ValueError(f"a wait lasts 0 to {MAX_WAIT.total_seconds():g} seconds")
    return value


@frozen
class GetTask:
    owner: str
    task_id: UUID
    wait: timedelta = field(default=timedelta(0), converter=_wait)
    """How long to wait for the task to finish (SUCCEEDED, FAILED or CANCELLED) before
    answering with it as it is then."""


class GetTaskHandler:
    """Returns the task, or raises ``TaskNotFound`` when it does not exist or another owner
    has it (the two are indistinguishable on purpose).

    With a ``wait``, a task not finished yet is read again once it finishes in this process
    (``Completions``), or after 50 ms, then after intervals doubling up to a second, until
    it finished or the wait is over; at once when the process is stopping.
    """

    def __init__(self, uow: UnitOfWorkFactory, completions: Completions | None = None) -> None:
        self._uow = uow
        self._completions = completions or Completions()

    async def __call__(self, query: GetTask) -> Task:
        task = await self._read(query)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + query.wait.total_seconds()
        interval = FIRST_READ_AGAIN
        while not task.status.is_terminal and (remaining := deadline - loop.time()) > 0:
            if self._completions.closing:
                break
            await self._completions.wait(task.id, min(interval, remaining))
            interval = min(interval * 2, LAST_READ_AGAIN)
            task = await self._read(query)
        return task

    async def _read(self, query: GetTask) -> Task:
        async with self._uow() as uow:
            task = await uow.tasks.get_owned(query.owner, query.task_id)
        if task is None:
            raise TaskNotFound(query.task_id)
        return task
