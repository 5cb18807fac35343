from __future__ import annotations

from typing import Protocol
from uuid import UUID


class IdGenerator(Protocol):
    """Time-ordered unique ids: each id compares greater than every id this generator
    returned before it (UUIDv7 with a monotonic counter)."""

    def new_id(self) -> UUID: ...
