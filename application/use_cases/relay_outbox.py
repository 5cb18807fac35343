"""Publish committed outbox messages to the broker and mark them sent."""

from __future__ import annotations

from application.ports.publisher import Publisher
from application.ports.unit_of_work import UnitOfWorkFactory

RELAY_BATCH = 500
"""Messages one relay pass publishes at most."""


class RelayOutboxHandler:
    """One relay pass: publishes up to ``limit`` pending messages, returns how many.

    Messages are marked sent only after the broker confirmed them; a crash in between
    publishes them again (at-least-once), which the state machine makes harmless.
    """

    def __init__(self, uow: UnitOfWorkFactory, publisher: Publisher) -> None:
        self._uow = uow
        self._publisher = publisher

    async def __call__(self, limit: int = RELAY_BATCH) -> int:
        async with self._uow() as uow:
            messages = await uow.outbox.pending(limit)
            if not messages:
                return 0
            await self._publisher.publish(messages)
            await uow.outbox.mark_sent(messages)
            await uow.commit()
        return len(messages)
