"""The schedules in their own collection: one document per schedule, mapped as the tasks
are (UUID strings, instants as integer microseconds, the payload as JSON text). Each call is
one write or read, applied at once."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from adapters.storage.mongo.client import Document, translated_errors
from adapters.storage.mongo.mapping import (
    instant,
    optional_instant,
    parse_instant,
    required_instant,
)
from application.errors import ScheduleNameTaken
from domain.schedule import Schedule, TaskTemplate
from domain.values import DEFAULT_QUEUE

SCHEDULE_INDEXES = [
    IndexModel([("owner", ASCENDING)], name="schedules_by_owner"),
    IndexModel(
        [("owner", ASCENDING), ("name", ASCENDING)],
        name="schedule_names",
        unique=True,
        partialFilterExpression={"name": {"$type": "string"}},
    ),
    IndexModel([("paused", ASCENDING), ("next_run_at", ASCENDING)], name="due_schedules"),
]


class MongoSchedules:
    def __init__(self, schedules: AsyncCollection[Document]) -> None:
        self._schedules = schedules

    async def add(self, schedule: Schedule) -> None:
        try:
            with translated_errors():
                await self._schedules.insert_one(_document(schedule))
        except DuplicateKeyError:
            raise ScheduleNameTaken(schedule.name or "") from None

    async def get(self, owner: str, schedule_id: UUID) -> Schedule | None:
        with translated_errors():
            found = await self._schedules.find_one(_owned(owner, schedule_id))
        return _from_document(found) if found is not None else None

    async def list(self, owner: str, limit: int, before: UUID | None = None) -> Sequence[Schedule]:
        query: Document = {"owner": owner}
        if before is not None:
            query["_id"] = {"$lt": str(before)}
        with translated_errors():
            cursor = self._schedules.find(query).sort("_id", DESCENDING).limit(limit)
            return [_from_document(document) async for document in cursor]

    async def count(self, owner: str) -> int:
        with translated_errors():
            return await self._schedules.count_documents({"owner": owner})

    async def delete(self, owner: str, schedule_id: UUID) -> bool:
        with translated_errors():
            result = await self._schedules.delete_one(_owned(owner, schedule_id))
        return result.deleted_count > 0

    async def pause(self, owner: str, schedule_id: UUID, now: datetime) -> Schedule | None:
        await self._change(
            {**_owned(owner, schedule_id), "paused": False},
            {"paused": True, "updated_at": instant(now)},
        )
        return await self.get(owner, schedule_id)

    async def resume(
        self, owner: str, schedule_id: UUID, next_run_at: datetime, now: datetime
    ) -> Schedule | None:
        await self._change(
            {**_owned(owner, schedule_id), "paused": True},
            {"paused": False, "next_run_at": instant(next_run_at), "updated_at": instant(now)},
        )
        return await self.get(owner, schedule_id)

    async def due(self, now: datetime, limit: int) -> Sequence[Schedule]:
        query = {"paused": False, "next_run_at": {"$lte": instant(now)}}
        with translated_errors():
            cursor = (
                self._schedules.find(query)
                .sort([("next_run_at", ASCENDING), ("_id", ASCENDING)])
                .limit(limit)
            )
            return [_from_document(document) async for document in cursor]

    async def ran(
        self,
        schedule_id: UUID,
        occurrence: datetime,
        next_run_at: datetime,
        task_id: UUID | None,
        now: datetime,
    ) -> bool:
        return await self._change(
            {"_id": str(schedule_id), "next_run_at": instant(occurrence)},
            {
                "last_run_at": instant(occurrence),
                "last_task_id": str(task_id) if task_id is not None else None,
                "next_run_at": instant(next_run_at),
                "updated_at": instant(now),
            },
        )

    async def _change(self, query: Document, fields: Document) -> bool:
        with translated_errors():
            changed = await self._schedules.find_one_and_update(
                query,
                {"$set": fields},
                projection={"_id": True},
                return_document=ReturnDocument.AFTER,
            )
        return changed is not None


def _owned(owner: str, schedule_id: UUID) -> Document:
    return {"_id": str(schedule_id), "owner": owner}


def _document(schedule: Schedule) -> Document:
    document: Document = {
        "_id": str(schedule.id),
        "owner": schedule.owner,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "kind": schedule.task.kind,
        "payload": json.dumps(schedule.task.payload),
        "max_attempts": schedule.task.max_attempts,
        "timeout_seconds": schedule.task.timeout_seconds,
        "callback_url": schedule.task.callback_url,
        "expires_after_seconds": schedule.task.expires_after_seconds,
        "queue": schedule.task.queue,
        "paused": schedule.paused,
        "next_run_at": instant(schedule.next_run_at),
        "last_run_at": optional_instant(schedule.last_run_at),
        "last_task_id": str(schedule.last_task_id) if schedule.last_task_id else None,
        "created_at": instant(schedule.created_at),
        "updated_at": instant(schedule.updated_at),
    }
    if schedule.name is not None:  # absent, not null: the unique index covers names only
        document["name"] = schedule.name
    return document


def _from_document(document: dict[str, Any]) -> Schedule:
    last_task_id = document.get("last_task_id")
    return Schedule(
        id=UUID(document["_id"]),
        owner=document["owner"],
        name=document.get("name"),
        cron=document["cron"],
        timezone=document["timezone"],
        task=TaskTemplate(
            kind=document["kind"],
            payload=json.loads(document["payload"]),
            max_attempts=document.get("max_attempts"),
            timeout_seconds=document.get("timeout_seconds"),
            callback_url=document.get("callback_url"),
            expires_after_seconds=document.get("expires_after_seconds"),
            # Schedules stored before queues have none: theirs was the default queue.
            queue=document.get("queue", DEFAULT_QUEUE),
        ),
        paused=document["paused"],
        next_run_at=required_instant(document["next_run_at"]),
        last_run_at=parse_instant(document.get("last_run_at")),
        last_task_id=UUID(last_task_id) if last_task_id else None,
        created_at=required_instant(document["created_at"]),
        updated_at=required_instant(document["updated_at"]),
    )
