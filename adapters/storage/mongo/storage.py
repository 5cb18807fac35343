"""MongoDB storage implementing the UnitOfWork, TaskRepository and Outbox ports, on a
standalone server (no replica set, so no multi-document transactions).

Atomicity without transactions: a task's pending outbox messages live inside the task's
own document (``outbox: {message id: message}``, with ``outbox_count`` and
``outbox_since``), so a state change and the messages it calls for are one single-document
write. A message whose task is not written by the unit goes to the ``outbox`` collection.

What ``commit`` guarantees:
- each task document, with its messages, is written entirely or not at all;
- every saved task's version is checked before anything is written, so a stale unit
  writes nothing; inserts refused (duplicate idempotency key) are undone;
- a save that loses a race in the instant between that check and its write leaves the
  unit's other tasks written (each consistent with its own messages).
  Sweeps claim their tasks (below), so they do not race each other on the same tasks.

Claims made by ``due``, ``stalled`` and ``pending`` are leases written in the documents
(``claimed_by``/``claimed_until``, ``outbox_claimed_by``/``outbox_claimed_until``): taken
with one conditional ``update_many``, released when the unit ends, and expired after
``CLAIM_LEASE`` when a process dies holding them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from adapters.storage.mongo.client import (
    OUTBOX_INDEXES,
    WORKER_INDEXES,
    Document,
    create_client,
    database_of,
    task_indexes,
    translated_errors,
)
from adapters.storage.mongo.leases import MongoLeases
from adapters.storage.mongo.mapping import (
    instant,
    message_fields,
    message_from_fields,
    parse_instant,
    task_fields,
    task_from_document,
)
from adapters.storage.mongo.schedules import SCHEDULE_INDEXES, MongoSchedules
from adapters.storage.mongo.workers import MongoWorkerRegistry
from adapters.storage.staging import StagingTaskRepository, StagingUnitOfWork
from application.errors import ConcurrencyConflict, DuplicateIdempotencyKey
from application.messages import task_named_by
from application.ports.outbox import OutboxMessage
from application.ports.task_repository import TaskQuery, TaskStats, counted_stats
from domain.task import Task
from domain.values import DEFAULT_QUEUE, TERMINAL_STATUSES, TaskStatus

DUPLICATE_KEY = 11000

logger = logging.getLogger("taskport.storage")

CLAIM_LEASE = timedelta(seconds=30)
"""How long a claim outlives a process that died holding it."""


KEY_PENDING_LEASE = timedelta(seconds=30)
"""A unit that inserts several tasks writes them one after the other, and takes them back
when one is refused: until all are in, their idempotency keys are not found
(``key_pending_until``), or a concurrent request could answer with a task about to be
taken back. Should the process die in between, the keys are found once this has passed."""

FINISHED: Document = {"$in": [status.value for status in TERMINAL_STATUSES]}
"""The status of a task that may be deleted (by retention or by its owner)."""

UNCLAIMED = 0
"""The lease of a document nobody claims: always in the past. A lease field is always
present, so "free" is one ``$lte`` (no ``$or`` with a missing field)."""


def _free(until: str, *branches: Document) -> Document:
    """The documents matching any of ``branches`` whose claim lease has run out.

    Filters are kept in disjunctive normal form (an ``$or`` of plain conjunctions): nx-27017
    ignores fields written next to an ``$or`` and mis-evaluates ``$and`` of ``$or``s.
    """
    now = instant(datetime.now(UTC))
    return {"$or": [{**branch, until: {"$lte": now}} for branch in branches]}


def _among(ids: Sequence[str], free: Document) -> Document:
    return {"$or": [{**branch, "_id": {"$in": list(ids)}} for branch in free["$or"]]}


class MongoStorage:
    """Tasks, outbox and workers in one MongoDB database reached through one client."""

    name = "storage"

    def __init__(self, client: AsyncMongoClient[Document]) -> None:
        self.client = client
        database = database_of(client)
        self.tasks: AsyncCollection[Document] = database["tasks"]
        self.outbox: AsyncCollection[Document] = database["outbox"]
        self.workers_collection: AsyncCollection[Document] = database["workers"]
        self.schedules_collection: AsyncCollection[Document] = database["schedules"]
        self.leases_collection: AsyncCollection[Document] = database["leases"]

    @classmethod
    def from_url(cls, url: str) -> MongoStorage:
        """``mongodb://host:port/database``; nothing connects before first use."""
        return cls(create_client(url))

    def unit_of_work(self) -> MongoUnitOfWork:
        return MongoUnitOfWork(self)

    def workers(self) -> MongoWorkerRegistry:
        return MongoWorkerRegistry(self.workers_collection)

    def schedules(self) -> MongoSchedules:
        return MongoSchedules(self.schedules_collection)

    def leases(self) -> MongoLeases:
        return MongoLeases(self.leases_collection)

    async def check(self) -> None:
        with translated_errors():
            await self.client.admin.command("ping")

    async def prepare(self) -> None:
        """Creates the indexes (idempotent): called at start, never at import."""
        with translated_errors():
            build = await self.client.admin.command("buildInfo")
            id_in_compound = build.get("process") != "nx_27017"
            await self.tasks.create_indexes(task_indexes(id_in_compound))
            await self.outbox.create_indexes(OUTBOX_INDEXES)
            await self.workers_collection.create_indexes(WORKER_INDEXES)
            await self.schedules_collection.create_indexes(SCHEDULE_INDEXES)

    async def close(self) -> None:
        await self.client.close()


class MongoTaskRepository(StagingTaskRepository["MongoUnitOfWork"]):
    def __init__(self, work: MongoUnitOfWork) -> None:
        super().__init__(work)
        self._tasks = work.storage.tasks

    async def _read(self, task_id: UUID) -> Task | None:
        with translated_errors():
            document = await self._tasks.find_one({"_id": str(task_id)})
        return self._loaded(document) if document is not None else None

    async def get_many(self, task_ids: Collection[UUID]) -> Mapping[UUID, Task]:
        found = {task_id: task for task_id in task_ids if (task := self._work.staged(task_id))}
        wanted = [str(task_id) for task_id in task_ids if task_id not in found]
        if wanted:
            with translated_errors():
                documents = [doc async for doc in self._tasks.find({"_id": {"$in": wanted}})]
            found.update((UUID(document["_id"]), self._loaded(document)) for document in documents)
        return found

    async def find_by_idempotency_key(self, owner: str, key: str) -> Task | None:
        with translated_errors():
            document = await self._tasks.find_one(
                {"owner": owner, "idempotency_key": key}, {"_id": 1, "key_pending_until": 1}
            )
        if document is None or _key_pending(document):
            return None
        return await self.get(UUID(document["_id"]))

    async def find_by_idempotency_keys(
        self, owner: str, keys: Collection[str]
    ) -> Mapping[str, Task]:
        if not keys:
            return {}
        with translated_errors():
            documents = [
                document
                async for document in self._tasks.find(
                    {"owner": owner, "idempotency_key": {"$in": list(keys)}}
                )
            ]
        found = {}
        for document in documents:
            if _key_pending(document):
                continue
            staged = self._work.staged(UUID(document["_id"]))
            found[document["idempotency_key"]] = staged or self._loaded(document)
        return found

    async def prune(self, finished_before: datetime, limit: int) -> int:
        """Found through the ``recovery_sweep`` index (status, updated_at); a document that
        still carries outbox messages is left (it is the relay's until they are sent)."""
        past_retention: Document = {
            "status": FINISHED,
            "updated_at": {"$lt": instant(finished_before)},
        }
        with translated_errors():
            found = [
                document["_id"]
                async for document in self._tasks.find(
                    past_retention, {"_id": 1, "outbox_count": 1}
                ).limit(limit)
                if not document.get("outbox_count")
            ]
            if not found:
                return 0
            deleted = await self._tasks.delete_many({**past_retention, "_id": {"$in": found}})
        return int(deleted.deleted_count)

    async def delete_finished(self, owner: str, task_id: UUID) -> bool:
        """A document that still carries outbox messages is kept until the relay has sent
        them (``prune`` leaves it for the same reason)."""
        with translated_errors():
            deleted = await self._tasks.delete_one(
                {
                    "_id": str(task_id),
                    "owner": owner,
                    "status": FINISHED,
                    "$or": [
                        {"outbox_count": {"$exists": False}},
                        {"outbox_count": {"$lte": 0}},
                    ],
                }
            )
        return bool(deleted.deleted_count)

    async def list(self, query: TaskQuery) -> Sequence[Task]:
        conditions: Document = {"owner": query.owner}
        if query.statuses:
            conditions["status"] = {"$in": sorted(status.value for status in query.statuses)}
        if query.kind is not None:
            conditions["kind"] = query.kind
        if query.queue == DEFAULT_QUEUE:  # documents written before queues have none
            conditions["queue"] = {"$in": [DEFAULT_QUEUE, None]}
        elif query.queue is not None:
            conditions["queue"] = query.queue
        if query.schedule_id is not None:
            # With the index's own filter: the index is used whatever the server infers.
            conditions["schedule_id"] = {"$type": "string", "$eq": str(query.schedule_id)}
        if query.before is not None:
            conditions["_id"] = {"$lt": str(query.before)}
        with translated_errors():
            cursor = self._tasks.find(conditions).sort("_id", DESCENDING).limit(query.limit)
            return [self._loaded(document) async for document in cursor]

    async def due(self, now: datetime, limit: int) -> Sequence[Task]:
        scheduled = TaskStatus.SCHEDULED.value
        free = _free(
            "claimed_until",
            {"status": scheduled, "run_at": None},
            {"status": scheduled, "run_at": {"$lte": instant(now)}},
        )
        return await self._claimed(free, [("run_at", ASCENDING), ("_id", ASCENDING)], limit)

    async def stalled(
        self,
        lease_ended_by: datetime,
        queued_since: datetime,
        limit: int,
        workers_lost_before: datetime | None = None,
    ) -> Sequence[Task]:
        """Also, with ``workers_lost_before``, RUNNING tasks of a worker that is not
        registered or whose last heartbeat is older."""
        branches: list[Document] = [
            {
                "status": TaskStatus.RUNNING.value,
                "lease_expires_at": {"$lte": instant(lease_ended_by)},
            },
            {"status": TaskStatus.QUEUED.value, "updated_at": {"$lte": instant(queued_since)}},
        ]
        if workers_lost_before is not None:
            alive = await self._workers_alive_since(workers_lost_before)
            branches.append({"status": TaskStatus.RUNNING.value, "worker_id": {"$nin": [*alive]}})
        free = _free("claimed_until", *branches)
        return await self._claimed(free, [("_id", ASCENDING)], limit)

    async def stats(self, owner: str | None) -> TaskStats:
        match: Document = {} if owner is None else {"owner": owner}
        # One string key per (status, kind, queue): nx-27017 does not group by a compound
        # key, and no status, kind or queue name can contain "|". A task stored before
        # there were queues has none: the default one.
        queue = {"$ifNull": ["$queue", DEFAULT_QUEUE]}
        grouped = [
            {"$match": match},
            {"$project": {"key": {"$concat": ["$status", "|", "$kind", "|", queue]}}},
            {"$group": {"_id": "$key", "count": {"$sum": 1}}},
        ]
        # Task.due_since: the later of created_at and run_at (a null run_at is less than
        # any number).
        later = {"$cond": [{"$gt": ["$run_at", "$created_at"]}, "$run_at", "$created_at"]}
        oldest_due = [
            {"$match": {**match, "status": TaskStatus.QUEUED.value}},
            {"$project": {"queue": queue, "since": later}},
            {"$group": {"_id": "$queue", "since": {"$min": "$since"}}},
        ]
        with translated_errors():
            rows = [row async for row in await self._tasks.aggregate(grouped)]
            oldest = [row async for row in await self._tasks.aggregate(oldest_due)]
        return counted_stats(
            (
                (TaskStatus(status), kind, queue, int(row["count"]))
                for row in rows
                for status, kind, queue in [row["_id"].split("|", 2)]
            ),
            ((str(row["_id"]), parse_instant(row["since"])) for row in oldest),
        )

    async def _workers_alive_since(self, since: datetime) -> Sequence[str | None]:
        """The ids of the workers heard from since ``since``, and ``None``: a task started
        by no known worker is judged by its lease alone."""
        workers = self._work.storage.workers_collection
        with translated_errors():
            cursor = workers.find({"last_heartbeat": {"$gte": instant(since)}}, {"_id": 1})
            return [None, *[document["_id"] async for document in cursor]]

    async def _claimed(
        self, free: Document, order: Sequence[tuple[str, int]], limit: int
    ) -> Sequence[Task]:
        """The first ``limit`` tasks matching ``free`` (unclaimed ones), claimed for this
        unit with a lease."""
        with translated_errors():
            candidates = [
                document["_id"]
                async for document in self._tasks.find(free, {"_id": 1})
                .sort(list(order))
                .limit(limit)
            ]
            if not candidates:
                return []
            self._work.claimed_tasks = True
            await self._tasks.update_many(
                _among(candidates, free),
                {
                    "$set": {
                        "claimed_by": self._work.token,
                        "claimed_until": instant(datetime.now(UTC) + CLAIM_LEASE),
                    }
                },
            )
            documents = {
                document["_id"]: document
                async for document in self._tasks.find(
                    {"_id": {"$in": candidates}, "claimed_by": self._work.token}
                )
            }
        return [self._loaded(documents[i]) for i in candidates if i in documents]

    def _loaded(self, document: Document) -> Task:
        return self._work.loaded(task_from_document(document))


class MongoOutbox:
    """The outbox as one unit of work sees it: messages inside task documents and in the
    ``outbox`` collection, oldest first."""

    def __init__(self, work: MongoUnitOfWork) -> None:
        self._work = work
        self._storage = work.storage

    async def put(self, message: OutboxMessage) -> None:
        self._work.new_messages.append(message)

    async def pending(
        self, limit: int, created_until: datetime | None = None
    ) -> Sequence[OutboxMessage]:
        until = instant(created_until) if created_until is not None else None
        with translated_errors():
            in_tasks = await self._claim_task_messages(limit, until)
            standalone = await self._claim_standalone(limit, until)
        merged = sorted(
            (*in_tasks, *standalone), key=lambda message: (message.created_at, message.id)
        )
        return merged[:limit]

    async def mark_sent(self, messages: Sequence[OutboxMessage]) -> None:
        self._work.sent_messages.extend(messages)

    async def backlog(self) -> int:
        with translated_errors():
            in_tasks = [
                document.get("outbox_count", 0)
                async for document in self._storage.tasks.find(
                    {"outbox_count": {"$gt": 0}}, {"outbox_count": 1}
                )
            ]
            standalone = await self._storage.outbox.count_documents({})
        return sum(in_tasks) + standalone

    async def prune(self, sent_before: datetime, limit: int) -> int:
        """Nothing to prune: a message leaves its task document (or the ``outbox``
        collection) when it is marked sent."""
        return 0

    async def _claim_task_messages(self, limit: int, until: int | None) -> list[OutboxMessage]:
        tasks = self._storage.tasks
        waiting: Document = {"outbox_count": {"$gt": 0}}
        if until is not None:
            waiting["outbox_since"] = {"$lte": until}
        free = _free("outbox_claimed_until", waiting)
        order = [("outbox_since", ASCENDING), ("_id", ASCENDING)]
        candidates = [
            document["_id"]
            async for document in tasks.find(free, {"_id": 1}).sort(order).limit(limit)
        ]
        if not candidates:
            return []
        self._work.claimed_messages = True
        await tasks.update_many(
            _among(candidates, free),
            {"$set": self._lease("outbox_claimed_by", "outbox_claimed_until")},
        )
        messages = []
        async for document in tasks.find(
            {"_id": {"$in": candidates}, "outbox_claimed_by": self._work.token},
            {"outbox": 1},
        ):
            for message_id, fields in (document.get("outbox") or {}).items():
                if until is not None and fields["created_at"] > until:
                    continue  # a younger message of the same task: the fast path's
                messages.append(message_from_fields(message_id, fields))
                self._work.message_homes[UUID(message_id)] = document["_id"]
        return messages

    async def _claim_standalone(self, limit: int, until: int | None) -> list[OutboxMessage]:
        outbox = self._storage.outbox
        free = _free("claimed_until", {} if until is None else {"created_at": {"$lte": until}})
        order = [("created_at", ASCENDING), ("_id", ASCENDING)]
        candidates = [
            document["_id"]
            async for document in outbox.find(free, {"_id": 1}).sort(order).limit(limit)
        ]
        if not candidates:
            return []
        self._work.claimed_messages = True
        await outbox.update_many(
            _among(candidates, free),
            {"$set": self._lease("claimed_by", "claimed_until")},
        )
        return [
            message_from_fields(document["_id"], document)
            async for document in outbox.find(
                {"_id": {"$in": candidates}, "claimed_by": self._work.token}
            )
        ]

    def _lease(self, by: str, until: str) -> Document:
        return {by: self._work.token, until: instant(datetime.now(UTC) + CLAIM_LEASE)}


class MongoUnitOfWork(StagingUnitOfWork):
    """Stages changes and writes them at ``commit`` (see the module's docstring)."""

    def __init__(self, storage: MongoStorage) -> None:
        super().__init__()
        self.storage = storage
        self.token = secrets.token_hex(12)
        self.message_homes: dict[UUID, str] = {}
        """Which task document holds each message this unit claimed."""
        self.claimed_tasks = False
        self.claimed_messages = False
        self.tasks = MongoTaskRepository(self)
        self.outbox = MongoOutbox(self)

    async def commit(self, *, durable: bool = True) -> None:
        try:
            with translated_errors():
                messages_of, standalone = self._place_messages()
                await self._check_versions()
                await self._insert_added(messages_of)
                await self._update_saved(messages_of)
                if standalone:
                    await self.storage.outbox.insert_many(
                        [
                            {"_id": str(m.id), **message_fields(m), "claimed_until": UNCLAIMED}
                            for m in standalone
                        ]
                    )
                await self._remove_sent()
        finally:
            await self._end()

    def _place_messages(self) -> tuple[dict[UUID, list[OutboxMessage]], list[OutboxMessage]]:
        """Each message rides in the document of the task it is about when the unit writes
        that task (or in the only task the unit writes); the others stand alone."""
        written = [*self.added, *self.saved]
        messages_of: dict[UUID, list[OutboxMessage]] = {}
        standalone = []
        for message in self.new_messages:
            home = task_named_by(message)
            if home not in written:
                home = written[0] if len(written) == 1 else None
            if home is None:
                standalone.append(message)
            else:
                messages_of.setdefault(home, []).append(message)
        return messages_of, standalone

    async def _check_versions(self) -> None:
        if not self.saved:
            return
        stored = {
            document["_id"]: document["version"]
            async for document in self.storage.tasks.find(
                {"_id": {"$in": [str(task_id) for task_id in self.saved]}}, {"version": 1}
            )
        }
        for task_id in self.saved:
            if stored.get(str(task_id)) != self.loaded_versions[task_id]:
                raise ConcurrencyConflict(task_id)

    async def _insert_added(self, messages_of: dict[UUID, list[OutboxMessage]]) -> None:
        """One ordered ``insert_many``; when a document is refused, those before it are
        removed again, so the unit adds all of its tasks or none, and their idempotency keys
        are found only once all are in (``KEY_PENDING_LEASE``)."""
        if not self.added:
            return
        added = list(self.added.values())
        pending: Document = {}
        if len(added) > 1 and any(task.idempotency_key for task in added):
            pending = {"key_pending_until": instant(datetime.now(UTC) + KEY_PENDING_LEASE)}
        documents = [
            {
                "_id": str(task.id),
                **task_fields(task),
                "claimed_until": UNCLAIMED,
                "outbox_claimed_until": UNCLAIMED,
                **_outbox_fields(messages_of.get(task.id, [])),
                **pending,
            }
            for task in added
        ]
        try:
            await self.storage.tasks.insert_many(documents, ordered=True)
            if pending:
                await self.storage.tasks.update_many(
                    {"_id": {"$in": [document["_id"] for document in documents]}},
                    {"$unset": {"key_pending_until": ""}},
                )
        except BulkWriteError as error:
            refused = (error.details.get("writeErrors") or [{}])[0]
            index = refused.get("index", len(documents))
            if index:
                await self.storage.tasks.delete_many(
                    {"_id": {"$in": [document["_id"] for document in documents[:index]]}}
                )
            if refused.get("code") != DUPLICATE_KEY or index >= len(added):
                raise
            task = added[index]
            if "idempotency_key" in str(refused.get("errmsg", "")) and task.idempotency_key:
                raise DuplicateIdempotencyKey(task.owner, task.idempotency_key) from None
            raise ConcurrencyConflict(task.id) from None

    async def _update_saved(self, messages_of: dict[UUID, list[OutboxMessage]]) -> None:
        """One version-checked update per saved task, sent together (``bulk_write``)."""
        if not self.saved:
            return
        updates = [
            UpdateOne(
                {"_id": str(task.id), "version": self.loaded_versions[task.id]},
                _change(task, messages_of.get(task.id, [])),
            )
            for task in self.saved.values()
        ]
        result = await self.storage.tasks.bulk_write(updates, ordered=True)
        if result.matched_count < len(updates):
            raise ConcurrencyConflict(next(iter(self.saved)))

    async def _remove_sent(self) -> None:
        """Each sent message leaves its task document atomically with the count, which is
        decremented only when the message was still there.

        A message this unit did not claim (the relay's fast path marks the messages it was
        handed) is looked for in the document of the task it names, then among the
        standalone ones."""
        standalone = []
        homes: set[str] = set()
        for message in self.sent_messages:
            home = self.message_homes.get(message.id)
            if home is None:
                named = task_named_by(message)
                home = str(named) if named is not None else None
            if home is None:
                standalone.append(str(message.id))
                continue
            homes.add(home)
            result = await self.storage.tasks.update_one(
                {"_id": home, f"outbox.{message.id}": {"$exists": True}},
                {"$unset": {f"outbox.{message.id}": ""}, "$inc": {"outbox_count": -1}},
            )
            if result.matched_count == 0 and message.id not in self.message_homes:
                standalone.append(str(message.id))
        for home in homes:
            await self.storage.tasks.update_one(
                {"_id": home, "outbox_count": {"$lte": 0}},
                {"$unset": {"outbox_since": "", "outbox_count": ""}},
            )
        if standalone:
            await self.storage.outbox.delete_many({"_id": {"$in": standalone}})

    async def _end(self) -> None:
        """Releases this unit's claims and forgets what it staged."""
        claimed_tasks, claimed_messages = self.claimed_tasks, self.claimed_messages
        self.claimed_tasks = self.claimed_messages = False
        self._forget()
        self.message_homes.clear()
        try:
            if claimed_tasks:
                await self._release(self.storage.tasks, "claimed_by", "claimed_until")
            if claimed_messages:
                await self._release(self.storage.tasks, "outbox_claimed_by", "outbox_claimed_until")
                await self._release(self.storage.outbox, "claimed_by", "claimed_until")
        except PyMongoError as error:
            # What the unit did stands; its claims run out by themselves (CLAIM_LEASE).
            logger.warning("releasing claims failed, they expire instead: %s", error)

    async def _release(self, collection: AsyncCollection[Document], by: str, until: str) -> None:
        await collection.update_many({by: self.token}, {"$set": {by: None, until: UNCLAIMED}})


def _key_pending(document: Document) -> bool:
    """Its unit may still take it back (see ``KEY_PENDING_LEASE``)."""
    return int(document.get("key_pending_until", 0)) > instant(datetime.now(UTC))


def _change(task: Task, messages: list[OutboxMessage]) -> Document:
    change: Document = {"$set": task_fields(task)}
    if messages:
        change["$set"].update({f"outbox.{m.id}": message_fields(m) for m in messages})
        change["$inc"] = {"outbox_count": len(messages)}
        change["$min"] = {"outbox_since": min(instant(m.created_at) for m in messages)}
    return change


def _outbox_fields(messages: Iterable[OutboxMessage]) -> Document:
    listed = list(messages)
    if not listed:
        return {}
    return {
        "outbox": {str(m.id): message_fields(m) for m in listed},
        "outbox_count": len(listed),
        "outbox_since": min(instant(m.created_at) for m in listed),
    }
