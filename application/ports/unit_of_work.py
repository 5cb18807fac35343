from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from application.ports.outbox import Outbox
from application.ports.task_repository import TaskRepository


class UnitOfWork(Protocol):
    """One transaction over the tasks and the outbox.

    Used as ``async with uow_factory() as uow: ...; await uow.commit()``. Leaving the block
    without ``commit`` rolls everything back. ``commit`` either makes every change of the
    unit visible at once or none of them (raising ``ConcurrencyConflict`` or
    ``DuplicateIdempotencyKey``). A storage that cannot be reached raises
    ``StorageUnavailable`` from any method.

    ``commit(durable=False)`` may return before the changes are flushed to disk: they are
    visible at once and never in part, but a crash of the database itself shortly after
    may undo them. It is for changes the caller makes good when they are lost: a claim,
    whose delivery is acked only after the outcome is written (the task, QUEUED again, is
    delivered and claimed again), or messages marked sent (a lost mark only publishes a
    message twice, which every consumer tolerates). A storage may flush them all the same.
    """

    tasks: TaskRepository
    outbox: Outbox

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self, *, durable: bool = True) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
