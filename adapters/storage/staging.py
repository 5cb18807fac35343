"""What a unit of work stages until it commits, kept the same way by every storage: the
tasks it adds and saves, the version each task it read had then, the outbox messages it
puts and marks sent. Each storage reads and writes them its own way."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Generic, Self, TypeVar
from uuid import UUID

from application.errors import ConcurrencyConflict
from application.ports.outbox import OutboxMessage
from domain.task import Task


class StagingUnitOfWork:
    """The changes a unit of work has staged; they are forgotten when the unit ends,
    committed or not (``_end``, where a storage also releases what the unit holds)."""

    def __init__(self) -> None:
        self.added: dict[UUID, Task] = {}
        self.saved: dict[UUID, Task] = {}
        self.loaded_versions: dict[UUID, int] = {}
        self.new_messages: list[OutboxMessage] = []
        self.sent_messages: list[OutboxMessage] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._end()

    async def _end(self) -> None:
        self._forget()

    def staged(self, task_id: UUID) -> Task | None:
        return self.added.get(task_id) or self.saved.get(task_id)

    def loaded(self, task: Task) -> Task:
        """``task`` as the storage gave it: a save checks the version it had then."""
        self.loaded_versions.setdefault(task.id, task.version)
        return task

    def _forget(self) -> None:
        self.added.clear()
        self.saved.clear()
        self.loaded_versions.clear()
        self.new_messages.clear()
        self.sent_messages.clear()


class UnitClaims:
    """What one unit of work claimed of the rows (tasks, or outbox messages) whose claims
    the units of this process share in ``held``: the other units skip them until this one
    ends (``release``)."""

    def __init__(self, held: set[UUID]) -> None:
        self._held = held
        self._mine: set[UUID] = set()

    def claim(self, ids: Iterable[UUID]) -> None:
        for claimed in ids:
            self._mine.add(claimed)
            self._held.add(claimed)

    def release(self) -> None:
        self._held -= self._mine
        self._mine.clear()


Work = TypeVar("Work", bound=StagingUnitOfWork)


class StagingTaskRepository(Generic[Work]):
    """The tasks as one unit of work sees them: the ones it staged, or else the stored
    ones (``_read``, each storage's own, like the queries)."""

    def __init__(self, work: Work) -> None:
        self._work = work

    async def add(self, task: Task) -> None:
        self._work.added[task.id] = task

    async def get(self, task_id: UUID) -> Task | None:
        return self._work.staged(task_id) or await self._read(task_id)

    async def _read(self, task_id: UUID) -> Task | None:
        raise NotImplementedError

    async def track(self, task: Task) -> None:
        self._work.loaded_versions[task.id] = task.version

    async def get_owned(self, owner: str, task_id: UUID) -> Task | None:
        task = await self.get(task_id)
        return task if task is not None and task.owner == owner else None

    async def save(self, task: Task) -> None:
        if task.id in self._work.added:
            return
        if task.id not in self._work.loaded_versions:
            raise ConcurrencyConflict(task.id)
        self._work.saved[task.id] = task
