"""Publish committed outbox messages to the broker and mark them sent: the relay's sweep."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from application.errors import PartlyPublished
from application.ports.clock import Clock
from application.ports.outbox import OutboxMessage
from application.ports.publisher import Publisher
from application.ports.unit_of_work import UnitOfWorkFactory

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
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        publisher: Publisher,
        clock: Clock,
        sweep_after: timedelta = SWEEP_AFTER,
    ) -> None:
        self._uow = uow
        self._publisher = publisher
        self._clock = clock
        self._sweep_after = sweep_after

    async def __call__(self, limit: int = RELAY_BATCH) -> int:
        created_until = self._clock.now() - self._sweep_after
        async with self._uow() as uow:
            messages = await uow.outbox.pending(limit, created_until)
            if not messages:
                return 0
            sent, failure = await published(self._publisher, messages)
            await uow.outbox.mark_sent(sent)
            await uow.commit()
        if failure is not None:
            raise failure
        return len(messages)


async def published(
    publisher: Publisher, messages: Sequence[OutboxMessage]
) -> tuple[Sequence[OutboxMessage], PartlyPublished | None]:
    """Publishes ``messages``; returns those the broker took, and what it said of the others
    when it took only some. Raises what ``publish`` raised when it cannot name any it took."""
    try:
        await publisher.publish(messages)
    except PartlyPublished as exc:
        return [message for message in messages if message.id in exc.published], exc
    return messages, None
