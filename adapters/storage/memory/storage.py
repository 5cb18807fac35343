"""In-process storage: a real implementation of the storage ports, kept in memory.

Each unit of work reads private copies and stages its changes; ``commit`` checks versions
and idempotency keys and applies everything in one step without awaiting, so on one event
loop a commit is atomic. Claims made by ``due`` and ``pending`` last until the unit ends,
as row locks with SKIP LOCKED would.
"""

from __future__ import annotations

import bisect
import collections
import copy
import heapq
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from uuid import UUID

from adapters.storage.memory.schedules import MemorySchedules
from adapters.storage.staging import StagingTaskRepository, StagingUnitOfWork, UnitClaims
from application.errors import ConcurrencyConflict, DuplicateIdempotencyKey
from application.ports.outbox import OutboxMessage
from application.ports.task_repository import TaskQuery, TaskStats, counted_stats
from application.ports.worker_registry import WorkerRecord
from domain.schedule import Schedule
from domain.task import Task
from domain.values import TERMINAL_STATUSES, TaskStatus


class MemoryStorage:
    """The committed state shared by every unit of work of this process."""

    name = "storage"

    def __init__(self) -> None:
        self.tasks: dict[UUID, Task] = {}
        self.ids_by_owner: dict[str, list[UUID]] = {}
        self.idempotency_keys: dict[tuple[str, str], UUID] = {}
        self.scheduled: set[UUID] = set()
        self.outbox: dict[UUID, OutboxMessage] = {}
        self.claimed_tasks: set[UUID] = set()
        self.claimed_messages: set[UUID] = set()
        self.workers_by_id: dict[str, WorkerRecord] = {}
        self.schedules_by_id: dict[UUID, Schedule] = {}
        self.leases_by_name: dict[str, tuple[str, datetime]] = {}
        """Each held lease's holder and the end of its time."""

    def unit_of_work(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self)

    def workers(self) -> MemoryWorkerRegistry:
        return MemoryWorkerRegistry(self)

    def schedules(self) -> MemorySchedules:
        return MemorySchedules(self)

    def leases(self) -> MemoryLeases:
        return MemoryLeases(self)

    def is_lost(self, worker_id: str | None, lost_before: datetime | None) -> bool:
        if worker_id is None or lost_before is None:
            return False
        worker = self.workers_by_id.get(worker_id)
        return worker is None or worker.last_heartbeat < lost_before

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def read(self, task_id: UUID) -> Task | None:
        stored = self.tasks.get(task_id)
        return copy.deepcopy(stored) if stored is not None else None

    def apply(self, work: MemoryUnitOfWork) -> None:
        for task in work.saved.values():
            stored = self.tasks.get(task.id)
            if stored is None or stored.version != work.loaded_versions[task.id]:
                raise ConcurrencyConflict(task.id)
        for task in work.added.values():
            if task.id in self.tasks:
                raise ConcurrencyConflict(task.id)
            key = self._key_of(task)
            if key is not None and key in self.idempotency_keys:
                raise DuplicateIdempotencyKey(*key)
        for task in work.added.values():
            bisect.insort(self.ids_by_owner.setdefault(task.owner, []), task.id)
            if (key := self._key_of(task)) is not None:
                self.idempotency_keys[key] = task.id
        for task in (*work.added.values(), *work.saved.values()):
            stored = copy.deepcopy(task)
            stored.pull_events()
            self.tasks[task.id] = stored
            if task.status is TaskStatus.SCHEDULED:
                self.scheduled.add(task.id)
            else:
                self.scheduled.discard(task.id)
        for message in work.new_messages:
            self.outbox[message.id] = message
        for message in work.sent_messages:
            self.outbox.pop(message.id, None)

    def prune(self, finished_before: datetime, limit: int) -> int:
        finished = [
            task
            for task in self.tasks.values()
            if task.status in TERMINAL_STATUSES and task.updated_at < finished_before
        ][:limit]
        for task in finished:
            self._delete(task)
        return len(finished)

    def delete_finished(self, owner: str, task_id: UUID) -> bool:
        task = self.tasks.get(task_id)
        if task is None or task.owner != owner or task.status not in TERMINAL_STATUSES:
            return False
        self._delete(task)
        return True

    def _delete(self, task: Task) -> None:
        del self.tasks[task.id]
        self.ids_by_owner[task.owner].remove(task.id)
        if (key := self._key_of(task)) is not None:
            del self.idempotency_keys[key]

    @staticmethod
    def _key_of(task: Task) -> tuple[str, str] | None:
        return (task.owner, task.idempotency_key) if task.idempotency_key else None


class MemoryTaskRepository(StagingTaskRepository["MemoryUnitOfWork"]):
    def __init__(self, work: MemoryUnitOfWork) -> None:
        super().__init__(work)
        self._storage = work.storage

    async def _read(self, task_id: UUID) -> Task | None:
        task = self._storage.read(task_id)
        return self._work.loaded(task) if task is not None else None

    async def get_many(self, task_ids: Collection[UUID]) -> Mapping[UUID, Task]:
        found = {task_id: await self.get(task_id) for task_id in task_ids}
        return {task_id: task for task_id, task in found.items() if task is not None}

    async def find_by_idempotency_key(self, owner: str, key: str) -> Task | None:
        task_id = self._storage.idempotency_keys.get((owner, key))
        return await self.get(task_id) if task_id is not None else None

    async def find_by_idempotency_keys(
        self, owner: str, keys: Collection[str]
    ) -> Mapping[str, Task]:
        found = {key: await self.find_by_idempotency_key(owner, key) for key in keys}
        return {key: task for key, task in found.items() if task is not None}

    async def prune(self, finished_before: datetime, limit: int) -> int:
        return self._storage.prune(finished_before, limit)

    async def delete_finished(self, owner: str, task_id: UUID) -> bool:
        return self._storage.delete_finished(owner, task_id)

    async def list(self, query: TaskQuery) -> Sequence[Task]:
        ids = self._storage.ids_by_owner.get(query.owner, [])
        end = bisect.bisect_left(ids, query.before) if query.before is not None else len(ids)
        page: list[Task] = []
        for task_id in reversed(ids[:end]):
            stored = self._storage.tasks[task_id]
            if (
                (not query.statuses or stored.status in query.statuses)
                and (query.kind is None or stored.kind == query.kind)
                and (query.queue is None or stored.queue == query.queue)
                and (query.schedule_id is None or stored.schedule_id == query.schedule_id)
            ):
                task = self._storage.read(task_id)
                assert task is not None
                page.append(task)
                if len(page) == query.limit:
                    break
        return page

    async def due(self, now: datetime, limit: int) -> Sequence[Task]:
        candidates = sorted(
            (
                task
                for task_id in self._storage.scheduled - self._storage.claimed_tasks
                if (task := self._storage.tasks[task_id]).is_due(now)
            ),
            key=lambda task: (task.run_at or now, task.id),
        )[:limit]
        return await self._claim(candidates)

    async def stats(self, owner: str | None) -> TaskStats:
        counts: collections.Counter[tuple[TaskStatus, str, str]] = collections.Counter()
        queued: list[tuple[str, datetime]] = []
        for task in self._storage.tasks.values():
            if owner is not None and task.owner != owner:
                continue
            counts[task.status, task.kind, task.queue] += 1
            if task.status is TaskStatus.QUEUED:
                queued.append((task.queue, task.due_since))
        return counted_stats(((*key, count) for key, count in counts.items()), queued)

    async def stalled(
        self,
        lease_ended_by: datetime,
        queued_since: datetime,
        limit: int,
        workers_lost_before: datetime | None = None,
    ) -> Sequence[Task]:
        def is_stalled(task: Task) -> bool:
            if task.status is TaskStatus.RUNNING:
                lease_ended = (
                    task.lease_expires_at is not None and task.lease_expires_at <= lease_ended_by
                )
                return lease_ended or self._storage.is_lost(task.worker_id, workers_lost_before)
            return task.status is TaskStatus.QUEUED and task.updated_at <= queued_since

        candidates = [
            task
            for task_id, task in self._storage.tasks.items()
            if task_id not in self._storage.claimed_tasks and is_stalled(task)
        ][:limit]
        return await self._claim(candidates)

    async def _claim(self, candidates: Sequence[Task]) -> list[Task]:
        claimed = []
        for candidate in candidates:
            self._work.task_claims.claim([candidate.id])
            task = await self.get(candidate.id)
            assert task is not None
            claimed.append(task)
        return claimed


class MemoryWorkerRegistry:
    """The workers of this process's storage; each call applies at once."""

    def __init__(self, storage: MemoryStorage) -> None:
        self._storage = storage

    async def heartbeat(self, worker: WorkerRecord) -> None:
        self._storage.workers_by_id[worker.id] = worker

    async def remove(self, worker_id: str) -> None:
        self._storage.workers_by_id.pop(worker_id, None)

    async def list(self) -> Sequence[WorkerRecord]:
        workers = self._storage.workers_by_id.values()
        return sorted(workers, key=lambda worker: (worker.started_at, worker.id), reverse=True)

    async def prune(self, before: datetime) -> int:
        gone = [w.id for w in self._storage.workers_by_id.values() if w.last_heartbeat < before]
        for worker_id in gone:
            del self._storage.workers_by_id[worker_id]
        return len(gone)


class MemoryLeases:
    """The leases of this process's storage; each call applies at once."""

    def __init__(self, storage: MemoryStorage) -> None:
        self._held = storage.leases_by_name

    async def take(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        held = self._held.get(name)
        if held is not None and held[0] != holder and held[1] > now:
            return False
        self._held[name] = (holder, until)
        return True

    async def release(self, name: str, holder: str) -> None:
        held = self._held.get(name)
        if held is not None and held[0] == holder:
            del self._held[name]


class MemoryOutbox:
    def __init__(self, work: MemoryUnitOfWork) -> None:
        self._work = work
        self._storage = work.storage

    async def put(self, message: OutboxMessage) -> None:
        self._work.new_messages.append(message)

    async def pending(
        self, limit: int, created_until: datetime | None = None
    ) -> Sequence[OutboxMessage]:
        claimed = self._storage.claimed_messages
        candidates = (
            message
            for message_id, message in self._storage.outbox.items()
            if message_id not in claimed
            and (created_until is None or message.created_at <= created_until)
        )
        oldest = heapq.nsmallest(limit, candidates, key=lambda m: (m.created_at, m.id))
        for message in oldest:
            self._work.message_claims.claim([message.id])
        return oldest

    async def mark_sent(self, messages: Sequence[OutboxMessage]) -> None:
        self._work.sent_messages.extend(messages)

    async def backlog(self) -> int:
        return len(self._storage.outbox)

    async def prune(self, sent_before: datetime, limit: int) -> int:
        """Nothing to prune: a message leaves the outbox when it is marked sent."""
        return 0


class MemoryUnitOfWork(StagingUnitOfWork):
    def __init__(self, storage: MemoryStorage) -> None:
        super().__init__()
        self.storage = storage
        self.task_claims = UnitClaims(storage.claimed_tasks)
        self.message_claims = UnitClaims(storage.claimed_messages)
        self.tasks = MemoryTaskRepository(self)
        self.outbox = MemoryOutbox(self)

    async def commit(self, *, durable: bool = True) -> None:
        self.storage.apply(self)
        await self._end()

    async def _end(self) -> None:
        self.task_claims.release()
        self.message_claims.release()
        self._forget()
