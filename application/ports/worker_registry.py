from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from attrs import field, frozen

from domain.values import DEFAULT_QUEUE


@frozen
class WorkerRecord:
    """What a worker says of itself at each heartbeat."""

    id: str
    host: str
    pid: int
    started_at: datetime
    last_heartbeat: datetime
    concurrency: int
    running: int
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    """The queues whose tasks it takes."""
    queue_limits: dict[str, int] = field(factory=dict)
    """The most tasks of a queue it runs at once, for the queues it takes with a limit."""


class WorkerRegistry(Protocol):
    """The workers that run tasks, as they report themselves.

    - ``heartbeat`` records the worker (the first call registers it) with its latest
      ``last_heartbeat`` and ``running`` count; a later call replaces the record.
    - ``remove`` forgets a worker that stopped cleanly; removing an unknown one is a no-op.
    - ``list`` returns every recorded worker, most recently started first. Whether a
      worker is lost (its heartbeat stopped) is the caller's judgement from
      ``last_heartbeat``.
    - ``prune`` forgets workers whose last heartbeat is older than ``before`` and returns
      how many it forgot.
    A storage that cannot be reached raises ``StorageUnavailable``.

    Each call is its own transaction, outside any unit of work. A worker must have
    heartbeated once before it claims a task (``Task.worker_id``): the recovery sweep
    (``TaskRepository.stalled``) takes a RUNNING task whose worker is lost or unknown as
    abandoned, and fails its attempt as ``AttemptLost`` without waiting for its lease.
    Timestamps come from each worker's clock: hosts are expected to keep time.
    """

    async def heartbeat(self, worker: WorkerRecord) -> None: ...

    async def remove(self, worker_id: str) -> None: ...

    async def list(self) -> Sequence[WorkerRecord]: ...

    async def prune(self, before: datetime) -> int: ...
