"""Delete the outbox messages sent longer ago than the retention: the outbox's cleanup."""

from __future__ import annotations

from datetime import timedelta

from application.ports.clock import Clock
from application.ports.unit_of_work import UnitOfWorkFactory

PRUNE_BATCH = 1000
"""Messages one prune pass deletes at most: one short statement, however many are due."""

RETENTION = timedelta(0)
"""How long a sent message is kept, by a storage told to keep sent messages as a record of
what was published and when; 0 deletes those kept under a longer retention."""


class PruneOutboxHandler:
    """One prune pass: deletes up to ``limit`` messages sent more than ``retention`` ago and
    returns how many. Messages not yet sent are never deleted.

    Safe to run in several processes at once: each message is deleted once.
    """

    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock, retention: timedelta = RETENTION
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._retention = retention

    async def __call__(self, limit: int = PRUNE_BATCH) -> int:
        sent_before = self._clock.now() - self._retention
        async with self._uow() as uow:
            return await uow.outbox.prune(sent_before, limit)
