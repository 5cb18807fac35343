"""Retry a failed or cancelled task by hand, with a fresh set of attempts."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from attrs import frozen

from application.use_cases.owned_change import OwnedTaskChange
from domain.task import Task


@frozen
class RetryTask:
    owner: str
    task_id: UUID


class RetryTaskHandler(OwnedTaskChange):
    def change(self, task: Task, now: datetime) -> None:
        task.retry(now)

    async def __call__(self, command: RetryTask) -> Task:
        return await self.apply(command.owner, command.task_id)
