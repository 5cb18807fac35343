"""List an owner's tasks, newest first, one keyset page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from attrs import frozen

from application.ports.task_repository import TaskQuery
from application.ports.unit_of_work import UnitOfWorkFactory
from domain.task import Task

MAX_PAGE_SIZE = 1000


@frozen
class TaskPage:
    items: Sequence[Task]
    next_before: UUID | None
    """Where the next page starts; ``None`` on the last page."""


class ListTasksHandler:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, query: TaskQuery) -> TaskPage:
        if not 1 <= query.limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        async with self._uow() as uow:
            # One row more than asked tells whether another page follows.
            rows = await uow.tasks.list(
                TaskQuery(
                    owner=query.owner,
                    limit=query.limit + 1,
                    status=query.status,
                    kind=query.kind,
                    before=query.before,
                )
            )
        items = list(rows[: query.limit])
        more = len(rows) > query.limit
        return TaskPage(items=items, next_before=items[-1].id if more else None)
