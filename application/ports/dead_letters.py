from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class DeadLetters(Protocol):
    """Where a message that can never be processed is kept, so that it is neither lost nor
    delivered again.

    ``put`` returns only once the destination has taken the message: ``body`` and
    ``attributes`` as given, plus ``reason``. It raises ``BrokerUnavailable`` otherwise,
    and the message may or may not be there then: a caller that puts it again may leave
    two copies. Only after ``put`` returned may the caller settle the original message.
    """

    async def put(self, body: bytes, attributes: Mapping[str, str], reason: str) -> None: ...
