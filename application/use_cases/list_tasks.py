"""List an owner's tasks, newest first, one keyset page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from attrs import evolve, frozen

from application.json_values import json_size
from application.ports.task_repository import TaskQuery
from application.ports.unit_of_work import UnitOfWork, UnitOfWorkFactory
from domain.task import Task

MAX_PAGE_SIZE = 1000
MAX_PAGE_BYTES = 8 * 1024 * 1024
"""A page ends early, with a cursor to the rest, once the payloads and results of its tasks
pass this many bytes of JSON (a page holds one task at least): a page of a thousand tasks
of a megabyte each would otherwise take gigabytes to read and to send."""
READ_CHUNK = 100
"""Tasks read at a time while a page fills: a page ended early by its size has read at
most this many tasks past its end."""


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
        items: list[Task] = []
        size = 0
        async with self._uow() as uow:
            while True:
                wanted = min(query.limit - len(items), READ_CHUNK)
                # One row more than asked tells whether more follow.
                rows = await _read(uow, query, wanted + 1, items[-1].id if items else None)
                for task in rows[:wanted]:
                    size += _bytes(task)
                    if items and size > self._max_page_bytes:
                        return TaskPage(items, items[-1].id)
                    items.append(task)
                if len(rows) <= wanted:
                    return TaskPage(items, None)
                if len(items) == query.limit:
                    return TaskPage(items, items[-1].id)


async def _read(
    uow: UnitOfWork, query: TaskQuery, limit: int, after: UUID | None
) -> Sequence[Task]:
    """``limit`` tasks of ``query``'s list, from its start or from past the task ``after``."""
    return await uow.tasks.list(evolve(query, limit=limit, before=after or query.before))


def _bytes(task: Task) -> int:
    return json_size(task.payload) + json_size(task.result)
