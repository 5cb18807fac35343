"""The relay's fast path: publish the messages a commit has just stored, then mark them sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from datetime import timedelta

from application.batching import Batcher, Request
from application.ports.outbox import OutboxMessage
from application.ports.publisher import Publisher
from application.ports.unit_of_work import UnitOfWorkFactory
from application.use_cases.relay_outbox import RELAY_BATCH, published
from domain.values import DEFAULT_QUEUE

logger = logging.getLogger("taskport.relay")

PUBLISHERS = 2
"""Batches the fast path publishes at once; the messages handed over meanwhile wait."""
MAX_WAITING = 20 * RELAY_BATCH
"""Messages waiting for the fast path at most. Beyond, while the broker is slow or blocked,
the messages of further commits are left to the sweep: the process's memory stays
bounded however long the broker takes."""
MARK_DELAY = timedelta(milliseconds=20)
"""How long published messages wait to be marked sent, with the messages published
meanwhile: under load one statement marks the messages of many batches, and at low load the
mark is written after the claims of the tasks the messages name, not racing them for the
database and the CPU."""
MAX_MARKS = 1000
"""Messages marked sent by one statement at most."""


class PublishCommittedHandler:
    """Publishes committed messages straight from memory, without reading them back.

    ``notify`` (the ``RelayTrigger`` the recorder calls after each commit) returns at once;
    up to ``publishers`` batches are published at a time, and the messages handed over
    meanwhile go together in the next batch (``Batcher``). A batch is marked sent only
    after the broker confirmed it; of a batch the broker took in part, the messages it took.
    Marks wait ``mark_delay`` and are written together, without waiting for the flush: a
    mark that is lost (or not written, the storage unavailable) only has the sweep publish
    its message again, which every consumer of a message tolerates.
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
        mark_delay: timedelta = MARK_DELAY,
        queues: Collection[str] = (DEFAULT_QUEUE,),
    ) -> None:
        """``queues``: the deployment's (see ``published``)."""
        self._uow = uow
        self._publisher = publisher
        self._queues = queues
        self._max_waiting = max_waiting
        self._mark_delay = mark_delay.total_seconds()
        self._published: list[OutboxMessage] = []
        """Published, not yet marked sent."""
        self._marking: asyncio.Task[None] | None = None
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
        """Returns once every message handed over so far was published (and marked sent) or
        given up."""
        await self._batches.drain()
        if self._marking is not None:
            await self._marking

    async def _publish(self, requests: Sequence[Request[OutboxMessage]]) -> list[None]:
        batch = [request.item for request in requests]
        try:
            sent, failure = await published(self._publisher, batch, self._queues)
            self._to_mark(sent)
        except Exception as exc:
            logger.warning("%d messages left to the relay sweep: %s", len(batch), exc)
        else:
            if failure is not None:
                left = len(batch) - len(sent)
                logger.warning("%d messages left to the relay sweep: %s", left, failure)
        return [None] * len(batch)

    def _to_mark(self, sent: Sequence[OutboxMessage]) -> None:
        self._published.extend(sent)
        if self._published and self._marking is None:
            self._marking = asyncio.create_task(self._mark_published())

    async def _mark_published(self) -> None:
        """Marks sent what was published, ``mark_delay`` after the first of it, until
        nothing is left to mark."""
        try:
            while self._published:
                await asyncio.sleep(self._mark_delay)
                marks = self._published[:MAX_MARKS]
                del self._published[:MAX_MARKS]
                try:
                    async with self._uow() as uow:
                        await uow.outbox.mark_sent(marks)
                        await uow.commit(durable=False)
                except Exception as exc:
                    logger.warning(
                        "%d published messages not marked sent, the relay sweep publishes "
                        "them again: %s",
                        len(marks),
                        exc,
                    )
        finally:
            self._marking = None
