from __future__ import annotations

import collections
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from attrs import field, frozen

from domain.task import Task
from domain.values import TaskStatus


@frozen
class TaskQuery:
    """One page of an owner's tasks, newest first, after the task ``before`` when given."""

    owner: str
    limit: int
    statuses: frozenset[TaskStatus] = frozenset()
    """The tasks in any of these statuses; in any status when empty."""
    kind: str | None = None
    queue: str | None = None
    schedule_id: UUID | None = None
    before: UUID | None = None


@frozen
class TaskStats:
    """Counts of tasks by status and kind, and by status and queue, and since when the
    oldest QUEUED task has been due, of all queues and of each."""

    counts: dict[tuple[TaskStatus, str], int]
    oldest_queued_at: datetime | None
    by_queue: dict[tuple[TaskStatus, str], int] = field(factory=dict)
    oldest_queued_by_queue: dict[str, datetime] = field(factory=dict)
    """Each queue holding a QUEUED task: since when its oldest has been due."""


def counted_stats(
    counted: Iterable[tuple[TaskStatus, str, str, int]],
    oldest_by_queue: Iterable[tuple[str, datetime]],
) -> TaskStats:
    """``TaskStats`` of counts by (status, kind, queue), and of the oldest due time of the
    QUEUED tasks of each queue."""
    by_kind: collections.Counter[tuple[TaskStatus, str]] = collections.Counter()
    by_queue: collections.Counter[tuple[TaskStatus, str]] = collections.Counter()
    for status, kind, queue, count in counted:
        by_kind[status, kind] += count
        by_queue[status, queue] += count
    oldest: dict[str, datetime] = {}
    for queue, since in oldest_by_queue:
        oldest[queue] = min(since, oldest.get(queue, since))
    overall = min(oldest.values(), default=None)
    return TaskStats(dict(by_kind), overall, dict(by_queue), oldest)


class TaskRepository(Protocol):
    """The tasks, inside a unit of work.

    - Tasks returned are the unit's own copies: changing one changes nothing stored until
      ``save`` and ``commit``.
    - ``add`` raises ``DuplicateIdempotencyKey`` (now or at commit) when the owner already has
      a task with the same idempotency key.
    - ``save`` writes a task read in this unit; it raises ``ConcurrencyConflict`` (now or at
      commit) when the stored version is no longer the one that was read. Of two units racing
      to change one task, exactly one commits.
    - ``track`` takes into this unit a task as an earlier unit committed it (at its
      ``version``), without reading it again: ``save`` then writes it only if nobody changed
      it since, and raises ``ConcurrencyConflict`` otherwise.
    - ``get_many`` is ``get`` for many tasks at once: the tasks found, by id (ids no task
      holds are absent).
    - ``get_owned`` is ``get`` scoped to an owner: another owner's task is ``None``.
    - ``find_by_idempotency_keys`` is ``find_by_idempotency_key`` for many keys at once:
      the owner's tasks holding any of ``keys``, by key (keys no task holds are absent).
    - ``list`` pages by id, newest first: ids are time-ordered, so a page never repeats or
      skips a task that existed when the first page was read.
    - ``due`` returns up to ``limit`` SCHEDULED tasks whose ``run_at`` is at or before ``now``,
      earliest first, claimed for this unit (concurrent sweeps do not receive the same tasks).
    - ``stalled`` returns up to ``limit`` tasks that look abandoned, claimed like ``due``:
      RUNNING with ``lease_expires_at`` at or before ``lease_ended_by``, and QUEUED with
      ``updated_at`` at or before ``queued_since``. With ``workers_lost_before``, also
      RUNNING tasks whose ``worker_id`` names a worker of the ``WorkerRegistry`` whose last
      heartbeat is before that time, or no recorded worker at all (it stopped, or was
      pruned); tasks with no ``worker_id`` are judged by their lease only. The worker records
      are read in the same query as the tasks, so a worker that registered before claiming
      a task is always seen with it.
    - ``stats`` counts the tasks of ``owner`` (of every owner when ``None``) by status and
      kind, and finds the creation time of the oldest QUEUED one.
    - ``prune`` deletes up to ``limit`` finished tasks (SUCCEEDED, FAILED, CANCELLED) last
      changed before ``finished_before``, and returns how many it deleted. Their
      idempotency keys are free again. It takes effect at once, in a transaction of its
      own, like ``Outbox.prune``; concurrent prunes delete each task once, and a task
      changed meanwhile (retried by hand) is not deleted.
    - ``delete_finished`` deletes the task ``task_id`` of ``owner`` if it is finished
      (SUCCEEDED, FAILED, CANCELLED), and says whether it did: false when the owner has no
      such task, or it has not finished. It takes effect at once, like ``prune``, and so
      does the check: a task retried meanwhile is not deleted. Its idempotency key is free
      again. A storage may keep a finished task a moment longer (false) while messages its
      last change called for are still waiting to be published with it.
    """

    async def add(self, task: Task) -> None: ...

    async def get(self, task_id: UUID) -> Task | None: ...

    async def get_many(self, task_ids: Collection[UUID]) -> Mapping[UUID, Task]: ...

    async def track(self, task: Task) -> None: ...

    async def get_owned(self, owner: str, task_id: UUID) -> Task | None: ...

    async def find_by_idempotency_key(self, owner: str, key: str) -> Task | None: ...

    async def find_by_idempotency_keys(
        self, owner: str, keys: Collection[str]
    ) -> Mapping[str, Task]: ...

    async def save(self, task: Task) -> None: ...

    async def list(self, query: TaskQuery) -> Sequence[Task]: ...

    async def due(self, now: datetime, limit: int) -> Sequence[Task]: ...

    async def stats(self, owner: str | None) -> TaskStats: ...

    async def prune(self, finished_before: datetime, limit: int) -> int: ...

    async def delete_finished(self, owner: str, task_id: UUID) -> bool: ...

    async def stalled(
        self,
        lease_ended_by: datetime,
        queued_since: datetime,
        limit: int,
        workers_lost_before: datetime | None = None,
    ) -> Sequence[Task]: ...
