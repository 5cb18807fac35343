from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Leases(Protocol):
    """Named leases, each held by one process at a time: a job done for the whole
    deployment (counting every stored task for the metrics) runs in the process holding
    its lease rather than in every process.

    - ``take`` gives the lease ``name`` to ``holder`` until ``until`` and returns True when
      it is free (never taken, released, or its holder's time ended by ``now``) or already
      held by ``holder`` (which extends it). Held by another, it returns False and
      changes nothing. Of concurrent takes of a free lease, one gets it.
    - ``release`` frees the lease when ``holder`` holds it, for another process to take at
      once; otherwise it is a no-op.
    A storage that cannot be reached raises ``StorageUnavailable``.

    Each call is its own transaction, outside any unit of work. ``now`` and ``until`` come
    from the caller's clock: hosts are expected to keep time, and a lease is meant to be
    held for several times the clocks' difference.
    """

    async def take(self, name: str, holder: str, now: datetime, until: datetime) -> bool: ...

    async def release(self, name: str, holder: str) -> None: ...
