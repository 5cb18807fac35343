"""The relay's fast path: publish the messages a commit has just stored, then mark them sent."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from application.batching import Batcher, Request
from application.ports.outbox import OutboxMessage
from application.ports.publisher import Publisher
from application.ports.unit_of_work import UnitOfWorkFactory
from application.use_cases.relay_outbox import RELAY_BATCH, published

logger = logging.getLogger("taskport.relay")

PUBLISHERS = 2
"""Batches the fast path publishes at once; the messages handed over meanwhile wait."""
MAX_WAITING = 20 * RELAY_BATCH
"""Messages waiting for the fast path at most. Beyond, while the broker is slow or blocked,
the messages of further commits are left to the sweep: the process's memory stays
bounded however long the broker takes."""


class PublishCommittedHandler:
    """Publishes committed messages straight from memory, without reading them back.

    ``notify`` (the ``RelayTrigger`` the recorder calls after each commit) returns at once;
    up to ``publishers`` batches are published at a time, and the messages handed over
    meanwhile go together in the next batch (``Batcher``). A batch is marked sent only
    after the broker confirmed it; of a batch the broker took in part, the messages it took.
    A batch that fails (broker or storage unavailable, a crash) stays pending in the outbox:
    the relay sweep (``RelayOutboxHandler``) takes it once it is older than the sweep's age,
    which the fast path normally never reaches, so the two do not publish the same message
    in the normal case.

    Once ``max_waiting`` messages wait (commits come faster than the broker takes their
    messages), the messages handed over are left to the sweep until no more than half as
    many wait.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        publisher: Publisher,
        publishers: int = PUBLISHERS,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self._uow = uow
        self._publisher = publisher
        self._max_waiting = max_waiting
        self._shedding = False
        self._batches: Batcher[OutboxMessage, None] = Batcher(
            self._publish, RELAY_BATCH, publishers
        )

    def notify(self, messages: Sequence[OutboxMessage]) -> None:
        waiting = self._batches.waiting
        if self._shedding and waiting <= self._max_waiting // 2:
            self._shedding = False
            logger.info("the fast path caught up (%d messages waiting)", waiting)
        if self._shedding or waiting + len(messages) > self._max_waiting:
            if not self._shedding:
                self._shedding = True
                logger.warning(
                    "publishing is behind (%d messages waiting): the messages of new "
                    "commits are left to the relay sweep until it catches up",
                    waiting,
                )
            return
        for message in messages:
            self._batches.put(message)

    async def drain(self) -> None:
        """Returns once every message handed over so far was published or given up."""
        await self._batches.drain()

    async def _publish(self, requests: Sequence[Request[OutboxMessage]]) -> list[None]:
        batch = [request.item for request in requests]
        try:
            sent, failure = await published(self._publisher, batch)
            async with self._uow() as uow:
                await uow.outbox.mark_sent(sent)
                await uow.commit(durable=False)  # a mark lost in a crash: sent again
        except Exception as exc:
            logger.warning("%d messages left to the relay sweep: %s", len(batch), exc)
        else:
            if failure is not None:
                left = len(batch) - len(sent)
                logger.warning("%d messages left to the relay sweep: %s", left, failure)
        return [None] * len(batch)
