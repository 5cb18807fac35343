"""The workers as the registry knows them, each judged alive or lost."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import timedelta

from attrs import frozen

from application.ports.clock import Clock
from application.ports.worker_registry import WorkerRecord, WorkerRegistry


class WorkerStatus(enum.Enum):
    ALIVE = "alive"
    LOST = "lost"
    """No heartbeat for ``lost_after``: its RUNNING tasks are taken back by the recovery
    sweep."""


@frozen
class WorkerView:
    record: WorkerRecord
    status: WorkerStatus


class ListWorkersHandler:
    """Every recorded worker, most recently started first; lost when its last heartbeat
    is older than ``lost_after``."""

    def __init__(self, registry: WorkerRegistry, clock: Clock, lost_after: timedelta) -> None:
        self._registry = registry
        self._clock = clock
        self._lost_after = lost_after

    async def __call__(self) -> Sequence[WorkerView]:
        lost_before = self._clock.now() - self._lost_after
        return [
            WorkerView(
                record,
                WorkerStatus.LOST if record.last_heartbeat < lost_before else WorkerStatus.ALIVE,
            )
            for record in await self._registry.list()
        ]
