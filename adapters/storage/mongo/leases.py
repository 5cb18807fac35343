"""The leases in their own collection: one document per lease taken, keyed by its name."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from adapters.storage.mongo.client import translated_errors
from adapters.storage.mongo.mapping import instant


class MongoLeases:
    """Each call is one write, applied at once (no unit of work)."""

    def __init__(self, leases: AsyncCollection[dict[str, Any]]) -> None:
        self._leases = leases

    async def take(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        ours_or_free = {"$or": [{"holder": holder}, {"expires_at": {"$lte": instant(now)}}]}
        held = {"$set": {"holder": holder, "expires_at": instant(until)}}
        try:
            with translated_errors():
                await self._leases.update_one({"_id": name, **ours_or_free}, held, upsert=True)
        except DuplicateKeyError:
            return False  # held by another: the upsert's insert met the lease's document
        return True

    async def release(self, name: str, holder: str) -> None:
        with translated_errors():
            await self._leases.delete_one({"_id": name, "holder": holder})
