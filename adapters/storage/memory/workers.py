"""The worker registry kept in memory, for one process."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from application.ports.worker_registry import WorkerRecord


class MemoryWorkerRegistry:
    """Each call applies at once."""

    def __init__(self) -> None:
        self._workers: dict[str, WorkerRecord] = {}

    async def heartbeat(self, worker: WorkerRecord) -> None:
        self._workers[worker.id] = worker

    async def remove(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def list(self) -> Sequence[WorkerRecord]:
        return sorted(self._workers.values(), key=lambda w: (w.started_at, w.id), reverse=True)

    async def prune(self, before: datetime) -> int:
        gone = [w.id for w in self._workers.values() if w.last_heartbeat < before]
        for worker_id in gone:
            del self._workers[worker_id]
        return len(gone)
