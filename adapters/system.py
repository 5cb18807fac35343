"""The process's clock, id sources and relay wake-up signal."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from datetime import UTC, datetime
from uuid import UUID

from uuid_utils import compat


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Uuid7Generator:
    """UUIDv7 (RFC 9562): millisecond timestamp first, with a counter that keeps ids
    strictly increasing within this process."""

    def new_id(self) -> UUID:
        return compat.uuid7()


def new_worker_id() -> str:
    """``host-pid-random``: readable in a list of workers, never reused."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class AsyncioRelayTrigger:
    """Wakes the relay loop of this process as soon as a commit staged outbox messages."""

    def __init__(self) -> None:
        self._wanted = asyncio.Event()

    def notify(self) -> None:
        self._wanted.set()

    async def wait(self, at_most: float) -> None:
        """Returns when notified or after ``at_most`` seconds, whichever comes first."""
        try:
            async with asyncio.timeout(at_most):
                await self._wanted.wait()
        except TimeoutError:
            pass
        self._wanted.clear()
