"""List an owner's tasks, newest first, one keyset page at a time."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from uuid import UUID

from attrs import evolve, frozen

from application.paging import MAX_PAGE_BYTES, bounded_page, task_bytes
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
    """The page of ``query``: at most ``query.limit`` tasks, fewer where their payloads and
    results pass ``max_page_bytes``."""

    def __init__(self, uow: UnitOfWorkFactory, max_page_bytes: int = MAX_PAGE_BYTES) -> None:
        self._uow = uow
        self._max_page_bytes = max_page_bytes

    async def __call__(self, query: TaskQuery) -> TaskPage:
        if not 1 <= query.limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        async with self._uow() as uow:

            def read(limit: int, after: UUID | None) -> Awaitable[Sequence[Task]]:
                return uow.tasks.list(evolve(query, limit=limit, before=after or query.before))

            items, next_before = await bounded_page(
                read, query.limit, task_bytes, self._max_page_bytes
            )
        return TaskPage(items, next_before)
