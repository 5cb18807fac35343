"""Keyset pages bounded by the bytes they hold as well as by their length."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar
from uuid import UUID

from application.json_values import json_size
from domain.task import Task

MAX_PAGE_BYTES = 8 * 1024 * 1024
"""A page ends early, with a cursor to the rest, once the JSON its items carry (payloads,
results) passes this many bytes (a page holds one item at least): a page of a thousand
items of a megabyte each would otherwise take gigabytes to read and to send."""
READ_CHUNK = 100
"""Items read at a time while a page fills: a page ended early by its size has read at
most this many items past its end."""


class _Identified(Protocol):
    @property
    def id(self) -> UUID: ...


Item = TypeVar("Item", bound=_Identified)


async def bounded_page(
    read: Callable[[int, UUID | None], Awaitable[Sequence[Item]]],
    limit: int,
    size_of: Callable[[Item], int],
    max_bytes: int = MAX_PAGE_BYTES,
) -> tuple[list[Item], UUID | None]:
    """Up to ``limit`` items, fewer once their ``size_of`` passes ``max_bytes`` (one at
    least, however large), and the id of the last when more follow (``None`` at the end).

    ``read(count, after)`` returns up to ``count`` items of the list, past the item
    ``after`` (from the page's start with ``None``)."""
    items: list[Item] = []
    size = 0
    while True:
        wanted = min(limit - len(items), READ_CHUNK)
        # One row more than asked tells whether more follow.
        rows = await read(wanted + 1, items[-1].id if items else None)
        for item in rows[:wanted]:
            size += size_of(item)
            if items and size > max_bytes:
                return items, items[-1].id
            items.append(item)
        if len(rows) <= wanted:
            return items, None
        if len(items) == limit:
            return items, items[-1].id


def task_bytes(task: Task) -> int:
    """What a task carries into a page: its payload and result, as JSON."""
    return json_size(task.payload) + json_size(task.result)
