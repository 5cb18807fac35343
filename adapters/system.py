"""The process's clock and id sources."""

from __future__ import annotations

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
