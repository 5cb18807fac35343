"""What a broker took of a batch it did not take whole, for every broker that confirms each
message on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from application.errors import BrokerUnavailable, PartlyPublished
from application.ports.outbox import OutboxMessage


def naming_the_published(
    error: BrokerUnavailable,
    messages: Sequence[OutboxMessage],
    confirmations: Sequence[asyncio.Future[Any]],
) -> BrokerUnavailable:
    """``error`` as ``PartlyPublished`` when the broker confirmed some of ``messages`` (each
    confirmed by the future at the same place in ``confirmations``); as it is otherwise."""
    published = frozenset(
        message.id
        for message, confirmation in zip(messages, confirmations, strict=True)
        if confirmation.done() and not confirmation.cancelled() and not confirmation.exception()
    )
    if not published:
        return error
    return PartlyPublished(error.reason, published)
