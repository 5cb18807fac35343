"""SQL storage (SQLite or PostgreSQL) implementing the UnitOfWork, TaskRepository and
Outbox ports.

A unit of work reads through its own connection and stages its changes; ``commit``
writes them in one transaction: inserts, version-checked updates
(``UPDATE ... WHERE id = :id AND version = :loaded``), outbox rows.

Reads run outside transactions, and a unit whose changes take one statement (a claim, a
recorded outcome) runs that statement alone: a statement is atomic by itself, and the
version check makes a change read outside the transaction that writes it safe. Units that
write more, or lock rows (PostgreSQL), open a transaction with an explicit ``BEGIN``
(``BEGIN IMMEDIATE`` on SQLite). Every statement
then costs one round trip to the database, and no ``BEGIN`` or ``COMMIT`` is sent for
nothing.

Many rows take one statement where the database allows it (``task_writes``): on
PostgreSQL, new tasks and their outbox rows are one ``WITH ... INSERT``, and the saved
tasks of a unit one ``UPDATE`` that writes every row or none, so a submit, a claim or an
outcome batch needs no transaction. These statements, and the reads of tasks by id, run
on asyncpg itself on the unit's connection (``asyncpg_direct``): a submit, a claim and an
outcome each take 0.2-0.3 ms less.

Claims made by ``due`` and ``pending`` last until the unit ends:
- PostgreSQL: the unit's transaction holds the rows with ``FOR UPDATE SKIP LOCKED``.
- SQLite has one writer and no row locks: reads run outside transactions (WAL), writes
  are serialised in this process, and claims are kept
  in this process. Units in other processes sharing the file may receive the same rows;
  the version check still lets only one of them commit a change to a task.

A sent outbox message's row is deleted as it is marked sent, as memory and MongoDB do.
With ``keep_sent`` it keeps its row with ``sent_at`` set instead (a partial index covers
the unsent ones), a record of what was published and when, until ``prune`` deletes it
(another partial index covers the sent ones): an ``UPDATE`` that writes a new version of
the row and its index entries, where a ``DELETE`` writes neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import (
    Executable,
    Row,
    Select,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.storage.sql.asyncpg_direct import AsyncpgStatement
from adapters.storage.sql.engine import POOL_SIZE, create_engine, translated_errors
from adapters.storage.sql.leases import SqlLeases
from adapters.storage.sql.mapping import (
    message_from_row,
    message_to_row,
    task_from_row,
    task_from_values,
    worker_from_row,
    worker_to_row,
)
from adapters.storage.sql.schedules import SqlSchedules
from adapters.storage.sql.schema import (
    ALEMBIC_VERSION,
    IN_A_NAMED_QUEUE,
    SCHEDULED,
    SCHEMA_REVISION,
    outbox,
    tasks,
    workers,
)
from adapters.storage.sql.task_writes import NO_FLUSH, insert_new, insert_tasks, update_tasks
from adapters.storage.staging import StagingTaskRepository, StagingUnitOfWork, UnitClaims
from application.ports.outbox import OutboxMessage
from application.ports.task_repository import TaskQuery, TaskStats, counted_stats
from application.ports.worker_registry import WorkerRecord
from domain.task import Task
from domain.values import DEFAULT_QUEUE, TERMINAL_STATUSES, TaskStatus

logger = logging.getLogger("taskport.storage")

# The statements of every claim and record, built once: SQLAlchemy then finds them
# compiled in its cache without building and hashing a new statement each time.
_TASK_BY_ID = select(tasks).where(tasks.c.id == bindparam("task_id"))
_TASKS_BY_IDS = select(tasks).where(tasks.c.id.in_(bindparam("task_ids", expanding=True)))
# On PostgreSQL one array parameter: one prepared statement whatever the number of ids.
_TASKS_BY_ID_PG = AsyncpgStatement("SELECT * FROM tasks WHERE id = ANY(CAST(:task_ids AS uuid[]))")
_MARK_SENT = update(outbox).where(outbox.c.sent_at.is_(None)).values(sent_at=bindparam("sent_at"))
_MESSAGE_IDS_PG = outbox.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(Uuid())))
_MARK_SENT_PG = _MARK_SENT.where(_MESSAGE_IDS_PG)
_MARK_SENT_PG_NO_FLUSH = _MARK_SENT_PG.where(text(NO_FLUSH))
_DELETE_SENT_PG = delete(outbox).where(_MESSAGE_IDS_PG)
_DELETE_SENT_PG_NO_FLUSH = _DELETE_SENT_PG.where(text(NO_FLUSH))


class SqlStorage:
    """Tasks and outbox in an SQL database reached through one SQLAlchemy async engine."""

    name = "storage"

    def __init__(self, engine: AsyncEngine, keep_sent: bool = False) -> None:
        self.engine = engine
        self.keep_sent = keep_sent
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.claimed_tasks: set[UUID] = set()
        self.claimed_messages: set[UUID] = set()
        self._write_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, pool_size: int = POOL_SIZE, keep_sent: bool = False) -> SqlStorage:
        """``sqlite:///path`` or ``postgresql://...``; nothing connects before first use.

        ``pool_size`` connections are kept open: enough for the units of work that run at
        once, or each unit beyond them opens and closes a connection of its own.
        ``keep_sent`` keeps a row for each sent outbox message until it is pruned."""
        return cls(create_engine(url, pool_size), keep_sent)

    def unit_of_work(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self)

    def schedules(self) -> SqlSchedules:
        return SqlSchedules(self)

    def workers(self) -> SqlWorkerRegistry:
        return SqlWorkerRegistry(self)

    def leases(self) -> SqlLeases:
        return SqlLeases(self)

    async def check(self) -> None:
        await self.read_alone(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()

    # Alembic is imported only to migrate: it costs half a second at every start.

    async def upgrade(self, revision: str = "head") -> None:
        from adapters.storage.sql import migrate

        with translated_errors():
            await migrate.upgrade(self.engine, revision)

    async def downgrade(self, revision: str) -> None:
        from adapters.storage.sql import migrate

        with translated_errors():
            await migrate.downgrade(self.engine, revision)

    async def current_revision(self) -> str | None:
        """The schema's revision as Alembic recorded it; ``None`` on an empty database.
        Read with a plain query: a process that only checks the schema never imports
        Alembic (several MB of memory in every worker)."""
        with translated_errors():
            async with self.engine.connect() as connection:
                if not await connection.run_sync(_has_version_table):
                    return None
                rows = (await connection.execute(select(ALEMBIC_VERSION.c.version_num))).all()
        return str(rows[0][0]) if rows else None

    async def migrations_pending(self) -> bool:
        return await self.current_revision() != SCHEMA_REVISION

    async def read_alone(self, statement: Executable) -> Sequence[Row[Any]]:
        """The rows of ``statement``, read outside any unit of work."""
        with translated_errors():
            async with self.engine.connect() as connection:
                return (await connection.execute(statement)).all()

    async def write_alone(self, statement: Executable) -> int:
        """Runs ``statement`` in a transaction of its own; returns how many rows it wrote."""
        with translated_errors():
            async with self.engine.connect() as connection, self.writing():
                if self.is_sqlite:
                    await connection.exec_driver_sql("BEGIN IMMEDIATE")
                result = await connection.execute(statement)
                await connection.commit()
        count: int = getattr(result, "rowcount", 0)
        return count

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """SQLite has a single writer: writers of this process take turns rather than
        spinning on the database lock."""
        if not self.is_sqlite:
            yield
            return
        async with self._write_lock:
            yield


def _newest_of_each(
    statement: Select[Any], statuses: Collection[TaskStatus], limit: int
) -> Select[Any]:
    """The newest ``limit`` tasks of ``statement`` in each of ``statuses``, together, to be
    ordered and cut to a page. Each status is one range of the (owner, status, id) index,
    read newest first and no further than a page: the page costs the same however many
    tasks are stored, where ``status IN (...)`` would have PostgreSQL sort every task of
    those statuses."""
    newest = [
        statement.where(tasks.c.status == status.value)
        .order_by(tasks.c.id.desc())
        .limit(limit)
        .subquery()
        for status in sorted(statuses)
    ]
    return select(union_all(*(select(each) for each in newest)).subquery())


def _has_version_table(connection: Any) -> bool:
    return bool(inspect(connection).has_table(ALEMBIC_VERSION.name))


class SqlTaskRepository(StagingTaskRepository["SqlUnitOfWork"]):
    async def _read(self, task_id: UUID) -> Task | None:
        if not self._work.storage.is_sqlite:
            found = await self._read_pg([task_id])
            return found[0] if found else None
        rows = await self._work.fetch(_TASK_BY_ID, {"task_id": task_id})
        return self._loaded(rows[0]) if rows else None

    async def get_many(self, task_ids: Collection[UUID]) -> Mapping[UUID, Task]:
        found = {task_id: task for task_id in task_ids if (task := self._work.staged(task_id))}
        wanted = [task_id for task_id in task_ids if task_id not in found]
        if wanted and self._work.storage.is_sqlite:
            rows = await self._work.fetch(_TASKS_BY_IDS, {"task_ids": wanted})
            found.update((task.id, task) for task in map(self._loaded, rows))
        elif wanted:
            found.update((task.id, task) for task in await self._read_pg(wanted))
        return found

    async def _read_pg(self, task_ids: list[UUID]) -> list[Task]:
        """The stored tasks of ``task_ids`` (PostgreSQL, one statement on asyncpg itself)."""
        records = await self._work.fetch_direct(_TASKS_BY_ID_PG, {"task_ids": task_ids})
        return [self._work.loaded(task_from_values(record)) for record in records]

    async def find_by_idempotency_key(self, owner: str, key: str) -> Task | None:
        statement = select(tasks.c.id).where(tasks.c.owner == owner, tasks.c.idempotency_key == key)
        rows = await self._work.fetch(statement)
        return await self.get(rows[0].id) if rows else None

    async def find_by_idempotency_keys(
        self, owner: str, keys: Collection[str]
    ) -> Mapping[str, Task]:
        if not keys:
            return {}
        statement = select(tasks).where(
            tasks.c.owner == owner, tasks.c.idempotency_key.in_(list(keys))
        )
        return {
            row.idempotency_key: self._work.staged(row.id) or self._loaded(row)
            for row in await self._work.fetch(statement)
        }

    async def list(self, query: TaskQuery) -> Sequence[Task]:
        statement = select(tasks).where(tasks.c.owner == query.owner)
        if query.kind is not None:
            statement = statement.where(tasks.c.kind == query.kind)
        if query.queue is not None:
            statement = statement.where(tasks.c.queue == query.queue)
            if query.queue != DEFAULT_QUEUE:
                statement = statement.where(IN_A_NAMED_QUEUE)
        if query.schedule_id is not None:
            statement = statement.where(tasks.c.schedule_id == query.schedule_id)
        if query.before is not None:
            statement = statement.where(tasks.c.id < query.before)
        if len(query.statuses) > 1:
            statement = _newest_of_each(statement, query.statuses, query.limit)
        elif query.statuses:
            (status,) = query.statuses
            statement = statement.where(tasks.c.status == status.value)
        statement = statement.order_by(statement.selected_columns.id.desc()).limit(query.limit)
        return [self._loaded(row) for row in await self._work.fetch(statement)]

    async def due(self, now: datetime, limit: int) -> Sequence[Task]:
        statement = (
            select(tasks)
            .where(
                SCHEDULED,  # the index's condition, in its words
                or_(tasks.c.run_at.is_(None), tasks.c.run_at <= now),
            )
            .order_by(tasks.c.run_at.asc().nulls_first(), tasks.c.id)
        )
        return await self._claimed(statement, limit)

    async def stats(self, owner: str | None) -> TaskStats:
        counted = select(tasks.c.status, tasks.c.kind, tasks.c.queue, func.count()).group_by(
            tasks.c.status, tasks.c.kind, tasks.c.queue
        )
        # Task.due_since: the later of created_at and run_at (NULL compares false).
        due_since = case(
            (tasks.c.run_at > tasks.c.created_at, tasks.c.run_at), else_=tasks.c.created_at
        )
        oldest = (
            select(tasks.c.queue, func.min(due_since))
            .where(tasks.c.status == TaskStatus.QUEUED.value)
            .group_by(tasks.c.queue)
        )
        if owner is not None:
            counted = counted.where(tasks.c.owner == owner)
            oldest = oldest.where(tasks.c.owner == owner)
        rows = await self._work.fetch(counted)
        oldest_rows = await self._work.fetch(oldest)
        return counted_stats(
            ((TaskStatus(status), kind, queue, count) for status, kind, queue, count in rows),
            ((queue, since) for queue, since in oldest_rows),
        )

    async def stalled(
        self,
        lease_ended_by: datetime,
        queued_since: datetime,
        limit: int,
        workers_lost_before: datetime | None = None,
    ) -> Sequence[Task]:
        running = tasks.c.status == TaskStatus.RUNNING.value
        abandoned = [
            and_(running, tasks.c.lease_expires_at <= lease_ended_by),
            and_(tasks.c.status == TaskStatus.QUEUED.value, tasks.c.updated_at <= queued_since),
        ]
        if workers_lost_before is not None:
            worker_alive = select(workers.c.id).where(
                workers.c.id == tasks.c.worker_id,
                workers.c.last_heartbeat >= workers_lost_before,
            )
            abandoned.append(and_(running, tasks.c.worker_id.is_not(None), ~exists(worker_alive)))
        statement = select(tasks).where(or_(*abandoned)).order_by(tasks.c.id)
        return await self._claimed(statement, limit)

    async def prune(self, finished_before: datetime, limit: int) -> int:
        """One ``DELETE``, the tasks found through ``ix_tasks_status_updated_at``; on
        PostgreSQL it skips the rows a concurrent prune (or a retry) holds. The condition is
        checked again on the rows deleted: a task retried meanwhile stays."""
        past_retention = and_(
            tasks.c.status.in_([status.value for status in TERMINAL_STATUSES]),
            tasks.c.updated_at < finished_before,
        )
        found = select(tasks.c.id).where(past_retention).limit(limit)
        if self._work.storage.is_sqlite:
            chosen = tasks.c.id.in_(found.scalar_subquery())
        else:
            locked = found.with_for_update(skip_locked=True).scalar_subquery()
            chosen = tasks.c.id == any_(func.array(locked))
        return await self._work.storage.write_alone(delete(tasks).where(chosen, past_retention))

    async def delete_finished(self, owner: str, task_id: UUID) -> bool:
        finished = tasks.c.status.in_([status.value for status in TERMINAL_STATUSES])
        statement = delete(tasks).where(tasks.c.id == task_id, tasks.c.owner == owner, finished)
        return await self._work.storage.write_alone(statement) > 0

    async def _claimed(self, statement: Select[Any], limit: int) -> list[Task]:
        """The first ``limit`` rows of ``statement`` that no other unit of work claimed,
        claimed for this one."""
        claimed = self._work.storage.claimed_tasks
        if self._work.storage.is_sqlite:
            rows = await self._work.fetch(statement.limit(limit + len(claimed)))
            rows = [row for row in rows if row.id not in claimed][:limit]
            self._work.task_claims.claim(row.id for row in rows)
        else:
            await self._work.begin()
            rows = await self._work.fetch(statement.limit(limit).with_for_update(skip_locked=True))
        return [self._loaded(row) for row in rows]

    def _loaded(self, row: Row[Any]) -> Task:
        return self._work.loaded(task_from_row(row))


class SqlWorkerRegistry:
    """The workers table; each call is a transaction of its own."""

    def __init__(self, storage: SqlStorage) -> None:
        self._storage = storage

    async def heartbeat(self, worker: WorkerRecord) -> None:
        row = worker_to_row(worker)
        dialect = sqlite if self._storage.is_sqlite else postgresql
        upsert = dialect.insert(workers).values(row)
        changes = {name: upsert.excluded[name] for name in row if name != "id"}
        await self._write(upsert.on_conflict_do_update(index_elements=["id"], set_=changes))

    async def remove(self, worker_id: str) -> None:
        await self._write(delete(workers).where(workers.c.id == worker_id))

    async def list(self) -> Sequence[WorkerRecord]:
        statement = select(workers).order_by(workers.c.started_at.desc(), workers.c.id.desc())
        return [worker_from_row(row) for row in await self._storage.read_alone(statement)]

    async def prune(self, before: datetime) -> int:
        return await self._write(delete(workers).where(workers.c.last_heartbeat < before))

    async def _write(self, statement: Executable) -> int:
        return await self._storage.write_alone(statement)


class SqlOutbox:
    """The outbox as one unit of work sees it."""

    def __init__(self, work: SqlUnitOfWork) -> None:
        self._work = work

    async def put(self, message: OutboxMessage) -> None:
        self._work.new_messages.append(message)

    async def pending(
        self, limit: int, created_until: datetime | None = None
    ) -> Sequence[OutboxMessage]:
        claimed = self._work.storage.claimed_messages
        statement = (
            select(outbox)
            .where(outbox.c.sent_at.is_(None))
            .order_by(outbox.c.created_at, outbox.c.id)
        )
        if created_until is not None:
            statement = statement.where(outbox.c.created_at <= created_until)
        if self._work.storage.is_sqlite:
            rows = await self._work.fetch(statement.limit(limit + len(claimed)))
            rows = [row for row in rows if row.id not in claimed][:limit]
            self._work.message_claims.claim(row.id for row in rows)
        else:
            await self._work.begin()
            rows = await self._work.fetch(statement.limit(limit).with_for_update(skip_locked=True))
        return [message_from_row(row) for row in rows]

    async def mark_sent(self, messages: Sequence[OutboxMessage]) -> None:
        self._work.sent_messages.extend(messages)

    async def backlog(self) -> int:
        rows = await self._work.fetch(
            select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
        )
        return int(rows[0][0])

    async def prune(self, sent_before: datetime, limit: int) -> int:
        """One ``DELETE`` of the oldest sent rows, found through ``ix_outbox_sent``.

        On PostgreSQL it skips the rows a concurrent prune holds, and takes the ids as an
        array (``= ANY(ARRAY(...))``): with ``IN (subquery)`` the planner may join the
        whole table instead of looking each id up."""
        oldest = (
            select(outbox.c.id)
            .where(outbox.c.sent_at < sent_before)
            .order_by(outbox.c.sent_at)
            .limit(limit)
        )
        if self._work.storage.is_sqlite:
            chosen = outbox.c.id.in_(oldest.scalar_subquery())
        else:
            locked = oldest.with_for_update(skip_locked=True).scalar_subquery()
            chosen = outbox.c.id == any_(func.array(locked))
        return await self._work.storage.write_alone(delete(outbox).where(chosen))


class SqlUnitOfWork(StagingUnitOfWork):
    """One transaction over the tasks and the outbox; rolled back unless committed."""

    def __init__(self, storage: SqlStorage) -> None:
        super().__init__()
        self.storage = storage
        self.task_claims = UnitClaims(storage.claimed_tasks)
        self.message_claims = UnitClaims(storage.claimed_messages)
        self._connection: AsyncConnection | None = None
        self._in_transaction = False
        self.tasks = SqlTaskRepository(self)
        self.outbox = SqlOutbox(self)

    async def commit(self, *, durable: bool = True) -> None:
        """On PostgreSQL, ``durable=False`` leaves the flush to the server's next one (within
        ``wal_writer_delay``, 200 ms by default) for a unit that updates rows; SQLite
        flushes as every commit does here (``synchronous=NORMAL``)."""
        if not (self.added or self.saved or self.new_messages or self.sent_messages):
            await self._end()
            return
        try:
            # The connection is taken before the writer's turn: a turn never waits for the
            # pool, whose connections may all be held by units waiting for their turn.
            connection = await self._connect()
            async with self.storage.writing():
                try:
                    with translated_errors():
                        if self.storage.is_sqlite:
                            if self._statements() > 1:
                                await connection.exec_driver_sql("BEGIN IMMEDIATE")
                            await self._write(connection, durable=True)
                            await connection.commit()
                        else:
                            if self.added and not (self.saved or self.sent_messages):
                                # New tasks and their messages: one statement, atomic alone.
                                added = list(self.added.values())
                                await insert_new(connection, added, self.new_messages)
                            else:
                                if self._statements() > 1:
                                    await self.begin()
                                await self._write(connection, durable)
                            if self._in_transaction:  # opened here, or by a locking read
                                await connection.exec_driver_sql("COMMIT")
                                self._in_transaction = False
                finally:
                    # Ends the transaction (a rollback unless committed) before the next
                    # writer's turn.
                    await self._release()
        finally:
            self._reset()

    async def fetch(
        self, statement: Executable, parameters: dict[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        connection = await self._connect()
        with translated_errors():
            result = await connection.execute(statement, parameters)
            return result.all()

    async def fetch_direct(
        self, statement: AsyncpgStatement, parameters: Mapping[str, Any]
    ) -> Sequence[asyncpg.Record]:
        """``fetch`` for a statement run on asyncpg itself (PostgreSQL only)."""
        connection = await self._connect()
        with translated_errors():
            return await statement.fetch(connection, parameters)

    async def begin(self) -> None:
        """Opens the unit's transaction on PostgreSQL (SQLite writers open their own)."""
        if self._in_transaction:
            return
        connection = await self._connect()
        with translated_errors():
            await connection.exec_driver_sql("BEGIN")
        self._in_transaction = True

    def _statements(self) -> int:
        """How many statements ``_write`` will run: one runs alone, without a transaction."""
        # PostgreSQL updates many tasks with one all-or-nothing statement
        # (``update_tasks``); SQLite's executemany needs the transaction for that.
        updates = len(self.saved) if self.storage.is_sqlite else min(len(self.saved), 1)
        return (
            len(self.added)
            + updates
            + (1 if self.new_messages else 0)
            + (1 if self.sent_messages else 0)
        )

    async def _connect(self) -> AsyncConnection:
        if self._connection is None:
            with translated_errors():
                connection = await self.storage.engine.connect()
                if not self.storage.is_sqlite:
                    # Transactions are opened explicitly (``begin``), only where needed;
                    # the pool restores the default when the connection comes back.
                    await connection.execution_options(isolation_level="AUTOCOMMIT")
                self._connection = connection
        return self._connection

    async def _write(self, connection: AsyncConnection, durable: bool) -> None:
        """The unit's statements; with ``durable`` False (PostgreSQL only), its updates
        turn off the wait for the flush for the whole transaction."""
        if self.added:
            await insert_tasks(connection, list(self.added.values()))
        if self.saved:
            saved = list(self.saved.values())
            await update_tasks(connection, saved, self.loaded_versions, durable)
        if self.new_messages:
            await connection.execute(insert(outbox), [message_to_row(m) for m in self.new_messages])
        if self.sent_messages:
            await self._write_sent(connection, durable)

    async def _write_sent(self, connection: AsyncConnection, durable: bool) -> None:
        """Deletes the rows of the messages sent, or marks them sent with ``keep_sent``."""
        ids = [message.id for message in self.sent_messages]
        keep = self.storage.keep_sent
        if self.storage.is_sqlite:
            if keep:
                marking = _MARK_SENT.where(outbox.c.id.in_(ids))
                await connection.execute(marking, {"sent_at": datetime.now(UTC)})
            else:
                await connection.execute(delete(outbox).where(outbox.c.id.in_(ids)))
        elif keep:  # one array: one prepared statement whatever the number of messages
            marking = _MARK_SENT_PG if durable else _MARK_SENT_PG_NO_FLUSH
            await connection.execute(marking, {"ids": ids, "sent_at": datetime.now(UTC)})
        else:
            deleting = _DELETE_SENT_PG if durable else _DELETE_SENT_PG_NO_FLUSH
            await connection.execute(deleting, {"ids": ids})

    async def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if self._in_transaction:
                self._in_transaction = False
                try:
                    await connection.exec_driver_sql("ROLLBACK")
                except Exception:
                    # A connection whose transaction may still be open never goes back
                    # to the pool.
                    await connection.invalidate()
            await connection.close()
        except Exception as error:
            # The connection is gone with its transaction; the pool replaces it.
            logger.debug("closing a database connection failed: %s", error)

    async def _end(self) -> None:
        self._reset()
        await self._release()

    def _reset(self) -> None:
        self.task_claims.release()
        self.message_claims.release()
        self._forget()
