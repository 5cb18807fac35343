from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from application.ports.outbox import OutboxMessage


class Publisher(Protocol):
    """Hands messages to the broker.

    ``publish`` returns only when the broker has taken responsibility for every message
    (persisted and confirmed where the broker confirms); it raises ``BrokerUnavailable``
    otherwise, in which case any of the messages may or may not have been published. When
    the broker confirmed some of them and not the others (a topic missing, a nack), it
    raises ``PartlyPublished`` naming those it took, so they are not published again.
    A message may be published more than once; consumers tolerate duplicates.
    """

    async def publish(self, messages: Sequence[OutboxMessage]) -> None: ...
