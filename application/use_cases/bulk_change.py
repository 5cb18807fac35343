"""The shared shape of an owner's command on every task that matches a filter (cancel the
waiting ones, retry the failed ones): one call changes a bounded number of them."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from uuid import UUID

from attrs import frozen

from application.errors import ConcurrencyConflict, TaskNotFound
from application.paging import MAX_PAGE_BYTES, bounded_page, task_bytes
from application.ports.clock import Clock
from application.ports.task_repository import TaskQuery
from application.ports.unit_of_work import UnitOfWorkFactory
from application.recorder import TaskRecorder
from application.use_cases.owned_change import OwnedTaskChange
from domain.errors import IllegalTransition
from domain.task import Task
from domain.values import TaskStatus

MAX_BULK_CHANGE = 1000
"""The most tasks one call changes: its tasks are read, and written, together. Fewer once
their payloads and results pass ``MAX_PAGE_BYTES`` (one at least), as a page of the list:
a thousand tasks of a megabyte each would otherwise be a gigabyte in memory."""


@frozen
class MatchingTasks:
    """The owner's tasks in any of ``statuses`` (and of one kind, queue or schedule when
    given), newest first, at most ``limit`` of them."""

    owner: str
    statuses: frozenset[TaskStatus]
    limit: int = MAX_BULK_CHANGE
    kind: str | None = None
    queue: str | None = None
    schedule_id: UUID | None = None


@frozen
class BulkChange:
    changed: tuple[UUID, ...]
    """The tasks changed, newest first."""
    more: bool
    """Tasks that matched were left for another call (more than ``limit`` matched, or the
    payloads of those read passed the bytes a call holds)."""


class OwnedTasksChange(OwnedTaskChange):
    """Applies ``change`` to up to ``matching.limit`` of the owner's tasks that match, all
    in one unit of work.

    The statuses asked must be among ``takes``, the ones ``change`` takes a task from
    (``ValueError`` otherwise): a changed task no longer matches, so calling again until
    ``more`` is false changes every task that matched. When one of the tasks changed
    meanwhile (a worker started it, another call changed it), the unit commits nothing and
    each task is changed on its own, as ``apply`` does: a task deleted or moved to a state
    the change does not take meanwhile is left out.
    """

    takes: frozenset[TaskStatus] = frozenset()

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        recorder: TaskRecorder,
        clock: Clock,
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> None:
        super().__init__(uow, recorder, clock)
        self._max_bytes = max_bytes

    async def __call__(self, matching: MatchingTasks) -> BulkChange:
        if not matching.statuses or not matching.statuses <= self.takes:
            taken = ", ".join(sorted(status.value for status in self.takes))
            raise ValueError(f"this change takes tasks in {taken} only")
        async with self._uow() as uow:

            def read(limit: int, after: UUID | None) -> Awaitable[Sequence[Task]]:
                query = TaskQuery(
                    matching.owner,
                    limit,
                    matching.statuses,
                    before=after,
                    kind=matching.kind,
                    queue=matching.queue,
                    schedule_id=matching.schedule_id,
                )
                return uow.tasks.list(query)

            chosen, left = await bounded_page(read, matching.limit, task_bytes, self._max_bytes)
            more = left is not None
            now = self._clock.now()
            for task in chosen:
                await uow.tasks.track(task)
                self.change(task, now)
            try:
                await self._recorder.commit(uow, saved=chosen)
                return BulkChange(tuple(task.id for task in chosen), more)
            except ConcurrencyConflict:
                pass
        changed: list[UUID] = []
        for task in chosen:
            try:
                changed.append((await self.apply(matching.owner, task.id)).id)
            except (TaskNotFound, IllegalTransition, ConcurrencyConflict):
                continue
        return BulkChange(tuple(changed), more)
