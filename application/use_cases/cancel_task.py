"""Cancel a task: at once when it waits, by request to its worker when it runs."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from attrs import frozen

from application.use_cases.owned_change import OwnedTaskChange
from domain.task import Task


@frozen
class CancelTask:
    owner: str
    task_id: UUID


class CancelTaskHandler(OwnedTaskChange):
    def change(self, task: Task, now: datetime) -> None:
        task.cancel(now)

    async def __call__(self, command: CancelTask) -> Task:
        return await self.apply(command.owner, command.task_id)
