"""The relay's fast path: publish the messages a commit has just stored, then mark them sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from application.ports.outbox import OutboxMessage
from application.ports.publisher import Publisher
from application.ports.unit_of_work import UnitOfWorkFactory
from application.use_cases.relay_outbox import RELAY_BATCH

logger = logging.getLogger("taskport.relay")

PUBLISHERS = 2
"""Batches the fast path publishes at once; the messages handed over meanwhile wait."""


class PublishCommittedHandler:
    """Publishes committed messages straight from memory, without reading them back.

    ``notify`` (the ``RelayTrigger`` the recorder calls after each commit) returns at once;
    up to ``publishers`` batches are published at a time, and the messages handed over
    meanwhile go together in the next batch. A batch is marked sent only after the broker
    confirmed it. A batch that fails (broker or storage unavailable, a crash) stays pending
    in the outbox: the relay sweep (``RelayOutboxHandler``) takes it once it is older than
    the sweep's age, which the fast path normally never reaches, so the two do not publish
    the same message in the normal case.
    """

    def __init__(
        self, uow: UnitOfWorkFactory, publisher: Publisher, publishers: int = PUBLISHERS
    ) -> None:
        self._uow = uow
        self._publisher = publisher
        self._publishers = publishers
        self._waiting: list[OutboxMessage] = []
        self._publishing: set[asyncio.Task[None]] = set()

    def notify(self, messages: Sequence[OutboxMessage]) -> None:
        self._waiting.extend(messages)
        if len(self._publishing) < self._publishers:
            publishing = asyncio.create_task(self._publish_while_waiting())
            self._publishing.add(publishing)
            publishing.add_done_callback(self._publishing.discard)

    async def drain(self) -> None:
        """Returns once every message handed over so far was published or given up."""
        while self._publishing:
            await asyncio.wait(set(self._publishing))

    async def _publish_while_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[:RELAY_BATCH]
                del self._waiting[:RELAY_BATCH]
                try:
                    await self._publisher.publish(batch)
                    async with self._uow() as uow:
                        await uow.outbox.mark_sent(batch)
                        await uow.commit()
                except Exception as exc:
                    logger.warning("%d messages left to the relay sweep: %s", len(batch), exc)
        finally:
            # Leaves the set as it finds nothing waiting, not when its done callback runs:
            # messages handed over in between would otherwise wait for the next commit.
            self._publishing.discard(asyncio.current_task())
