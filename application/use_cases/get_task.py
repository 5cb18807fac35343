"""Read one task of its owner."""

from __future__ import annotations

from uuid import UUID

from attrs import frozen

from application.errors import TaskNotFound
from application.ports.unit_of_work import UnitOfWorkFactory
from domain.task import Task


@frozen
class GetTask:
    owner: str
    task_id: UUID


class GetTaskHandler:
    """Returns the task, or raises ``TaskNotFound`` when it does not exist or another owner
    has it (the two are indistinguishable on purpose)."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, query: GetTask) -> Task:
        async with self._uow() as uow:
            task = await uow.tasks.get_owned(query.owner, query.task_id)
        if task is None:
            raise TaskNotFound(query.task_id)
        return task
