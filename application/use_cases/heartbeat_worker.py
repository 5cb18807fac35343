"""A worker tells the registry it is alive, and forgets the workers lost long ago; at a
clean stop, it signs off."""

from __future__ import annotations

from datetime import datetime, timedelta

from attrs import field, frozen

from application.ports.clock import Clock
from application.ports.worker_registry import WorkerRecord, WorkerRegistry
from domain.values import DEFAULT_QUEUE


@frozen
class WorkerIdentity:
    """What stays the same for the life of a worker."""

    id: str
    host: str
    pid: int
    started_at: datetime
    concurrency: int
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    queue_limits: dict[str, int] = field(factory=dict)


class HeartbeatWorkerHandler:
    """Records ``worker`` as alive now with ``running`` tasks in hand (the first heartbeat
    registers it), then prunes the workers silent for longer than ``prune_after``."""

    def __init__(
        self, registry: WorkerRegistry, clock: Clock, prune_after: timedelta = timedelta(hours=1)
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._prune_after = prune_after

    async def __call__(self, worker: WorkerIdentity, running: int) -> None:
        now = self._clock.now()
        await self._registry.heartbeat(
            WorkerRecord(
                id=worker.id,
                host=worker.host,
                pid=worker.pid,
                started_at=worker.started_at,
                last_heartbeat=now,
                concurrency=worker.concurrency,
                running=running,
                queues=worker.queues,
                queue_limits=worker.queue_limits,
            )
        )
        await self._registry.prune(now - self._prune_after)


class SignOffWorkerHandler:
    """A worker that stopped cleanly (its tasks handed back) leaves the registry."""

    def __init__(self, registry: WorkerRegistry) -> None:
        self._registry = registry

    async def __call__(self, worker: WorkerIdentity) -> None:
        await self._registry.remove(worker.id)
