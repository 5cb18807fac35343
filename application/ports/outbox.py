from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from attrs import frozen


@frozen
class OutboxMessage:
    """A message to publish, written in the transaction of the change that caused it."""

    id: UUID
    topic: str
    body: bytes
    created_at: datetime


class Outbox(Protocol):
    """Messages waiting to be published, part of the unit of work.

    - ``put`` stages a message; it becomes visible to relays only when the unit commits.
    - ``pending`` returns up to ``limit`` unsent messages, oldest first, and claims them for
      this unit of work: a concurrent unit of work does not receive the same messages until
      this one ends (SKIP LOCKED where the storage has it). With ``created_until``, only
      messages created at or before that instant.
    - ``mark_sent`` records that the messages were published; it takes effect on commit. The
      messages need not have been claimed by this unit (the relay's fast path marks the
      messages it was handed); a message sent already is left as it is.
    - ``backlog`` counts the messages not yet sent (claimed or not).
    - ``prune`` deletes up to ``limit`` messages that were marked sent (and committed) before
      ``sent_before``, and returns how many it deleted. It never deletes a message not yet
      sent, claimed or not. It takes effect at once, in a transaction of its own: the
      unit's commit or rollback does not change it. Concurrent prunes may run; each message
      is deleted once. A storage that deletes messages as they are marked sent (memory,
      MongoDB) keeps none to prune and returns 0.
    """

    async def put(self, message: OutboxMessage) -> None: ...

    async def pending(
        self, limit: int, created_until: datetime | None = None
    ) -> Sequence[OutboxMessage]: ...

    async def mark_sent(self, messages: Sequence[OutboxMessage]) -> None: ...

    async def backlog(self) -> int: ...

    async def prune(self, sent_before: datetime, limit: int) -> int: ...


class RelayTrigger(Protocol):
    """Hands the outbox relay the messages a unit of work has just committed: the fast path
    to the broker.

    ``notify`` returns at once; the messages are published (and marked sent once the broker
    confirmed them) in the background. A message the fast path could not publish or mark
    stays pending in the outbox, where the relay's sweep takes it.
    """

    def notify(self, messages: Sequence[OutboxMessage]) -> None: ...
