"""The worker registry in its own collection: one document per worker, keyed by its id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from adapters.storage.mongo.client import translated_errors
from adapters.storage.mongo.mapping import instant, worker_document, worker_from_document
from application.ports.worker_registry import WorkerRecord


class MongoWorkerRegistry:
    """Each call is one write or read, applied at once (no unit of work)."""

    def __init__(self, workers: AsyncCollection[dict[str, Any]]) -> None:
        self._workers = workers

    async def heartbeat(self, worker: WorkerRecord) -> None:
        with translated_errors():
            await self._workers.update_one(
                {"_id": worker.id}, {"$set": worker_document(worker)}, upsert=True
            )

    async def remove(self, worker_id: str) -> None:
        with translated_errors():
            await self._workers.delete_one({"_id": worker_id})

    async def list(self) -> Sequence[WorkerRecord]:
        with translated_errors():
            cursor = self._workers.find().sort([("started_at", DESCENDING), ("_id", DESCENDING)])
            return [worker_from_document(document) async for document in cursor]

    async def prune(self, before: datetime) -> int:
        with translated_errors():
            result = await self._workers.delete_many({"last_heartbeat": {"$lt": instant(before)}})
        return result.deleted_count
