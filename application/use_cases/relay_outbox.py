"""Publish committed outbox messages to the broker and mark them sent: the relay's sweep."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import timedelta

from application.errors import PartlyPublished
from application.messages import queue_of
from application.ports.clock import Clock
from application.ports.outbox import OutboxMessage
from application.ports.publisher import Publisher
from application.ports.unit_of_work import UnitOfWorkFactory
from domain.values import DEFAULT_QUEUE

logger = logging.getLogger("taskport.relay")

RELAY_BATCH = 500
"""Messages one relay pass publishes at most."""

SWEEP_AFTER = timedelta(seconds=5)
"""How old a pending message is before the sweep takes it: until then it is the fast path's
(``PublishCommittedHandler``), which publishes it within milliseconds of its commit."""


class RelayOutboxHandler:
    """One relay sweep: publishes up to ``limit`` pending messages created at least
    ``sweep_after`` ago, returns how many.

    It takes what the fast path left behind: messages of a process that stopped between
    commit and publish, or whose publish failed. Messages are marked sent only after the
    broker confirmed them; a crash in between publishes them again (at-least-once), which
    the state machine makes harmless. When the broker took only some of them, those are
    marked sent and ``PartlyPublished`` is raised for the others, which stay pending.
    Run messages of queues the deployment does not have (``queues``) are set aside (see
    ``published``).
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        publisher: Publisher,
        clock: Clock,
        sweep_after: timedelta = SWEEP_AFTER,
        queues: Collection[str] = (DEFAULT_QUEUE,),
    ) -> None:
        self._uow = uow
        self._publisher = publisher
        self._clock = clock
        self._sweep_after = sweep_after
        self._queues = queues

    async def __call__(self, limit: int = RELAY_BATCH) -> int:
        created_until = self._clock.now() - self._sweep_after
        async with self._uow() as uow:
            messages = await uow.outbox.pending(limit, created_until)
            if not messages:
                return 0
            sent, failure = await published(self._publisher, messages, self._queues)
            await uow.outbox.mark_sent(sent)
            await uow.commit()
        if failure is not None:
            raise failure
        return len(messages)


async def published(
    publisher: Publisher,
    messages: Sequence[OutboxMessage],
    queues: Collection[str] = (DEFAULT_QUEUE,),
) -> tuple[Sequence[OutboxMessage], PartlyPublished | None]:
    """Publishes ``messages``; returns those done with, and what the broker said of the
    others when it took only some. Raises what ``publish`` raised when it cannot name any it
    took.

    A run message of a queue that is not one of ``queues`` (the deployment's, as this
    process is configured) is done with unpublished, and an error says so: no broker here
    carries it, and left pending it would hold the sweep at it for good. Its task stays
    QUEUED, counted in its queue, until a process that has the queue dispatches it again
    (the recovery sweep's redispatch)."""
    carried: list[OutboxMessage] = []
    set_aside: list[OutboxMessage] = []
    for message in messages:
        queue = queue_of(message.topic)
        (set_aside if queue is not None and queue not in queues else carried).append(message)
    if set_aside:
        named = sorted({str(queue_of(message.topic)) for message in set_aside})
        logger.error(
            "%d run messages not published: their queues (%s) are not in TASKPORT_QUEUES "
            "(%s); their tasks stay QUEUED until a process that has the queue dispatches "
            "them again",
            len(set_aside),
            ", ".join(named),
            ", ".join(queues),
        )
    try:
        if carried:
            await publisher.publish(carried)
    except PartlyPublished as exc:
        taken = [message for message in carried if message.id in exc.published]
        return [*set_aside, *taken], exc
    return [*set_aside, *carried], None
