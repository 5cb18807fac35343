"""Delete the tasks that finished longer ago than the retention: the tasks' cleanup."""

from __future__ import annotations

from datetime import timedelta

from application.ports.clock import Clock
from application.ports.unit_of_work import UnitOfWorkFactory

PRUNE_BATCH = 1000
"""Tasks one prune pass deletes at most: one short statement, however many are due."""


class PruneTasksHandler:
    """One prune pass: deletes up to ``limit`` tasks that finished (SUCCEEDED, FAILED,
    CANCELLED) and were not changed for ``retention``, and returns how many. Their results
    are gone, and their idempotency keys free again.

    Safe to run in several processes at once: each task is deleted once.
    """

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, retention: timedelta) -> None:
        if retention <= timedelta(0):
            raise ValueError(f"a retention must be positive, not {retention}")
        self._uow = uow
        self._clock = clock
        self._retention = retention

    async def __call__(self, limit: int = PRUNE_BATCH) -> int:
        finished_before = self._clock.now() - self._retention
        async with self._uow() as uow:
            return await uow.tasks.prune(finished_before, limit)
