"""The migrations build the schema the SQL storage expects, and undo it."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect

from adapters.storage.sql import SqlStorage, migrate
from adapters.storage.sql.mapping import task_to_row
from adapters.storage.sql.schema import SCHEMA_REVISION, metadata, schedules, tasks
from domain.values import DEFAULT_QUEUE
from tests.factories import T0, make_message, make_task, new_id


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _differences(connection: Connection) -> list[Any]:
    """What the migrated schema lacks or has more than the tables, of what this database
    builds: an index or a constraint made for another database only (``ddl_if``) is not
    compared, which Alembic would."""
    dialect = connection.dialect.name

    def built_here(item: Any, name: Any, type_: str, reflected: bool, compared: Any) -> bool:
        ddl_if = getattr(item, "_ddl_if", None)
        return reflected or ddl_if is None or ddl_if.dialect in (None, dialect)

    context = MigrationContext.configure(connection, opts={"include_object": built_here})
    return compare_metadata(context, metadata)


async def tables(storage: SqlStorage) -> set[str]:
    async with storage.engine.connect() as connection:
        return await connection.run_sync(_tables)


def test_the_schema_revision_the_code_checks_is_alembics_head() -> None:
    assert migrate.head() == SCHEMA_REVISION


async def test_migrations_go_up_down_and_up_again(empty_database_url: str) -> None:
    storage = SqlStorage.from_url(empty_database_url)
    try:
        assert await storage.current_revision() is None
        assert await storage.migrations_pending()
        await storage.upgrade()
        assert await tables(storage) == {"tasks", "outbox", "workers", "schedules", "leases"}
        assert not await storage.migrations_pending()
        await storage.downgrade("base")
        assert await tables(storage) == set()
        assert await storage.current_revision() is None
        await storage.upgrade()
        assert not await storage.migrations_pending()
        async with storage.unit_of_work() as uow:
            task = make_task(idempotency_key="k")
            await uow.tasks.add(task)
            await uow.outbox.put(make_message())
            await uow.commit()
        async with storage.unit_of_work() as uow:
            assert await uow.tasks.get(task.id) is not None
    finally:
        await storage.close()


async def test_the_migrated_schema_matches_the_storage_tables(empty_database_url: str) -> None:
    storage = SqlStorage.from_url(empty_database_url)
    try:
        await storage.upgrade()
        async with storage.engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await storage.close()


async def test_tasks_and_schedules_stored_before_queues_are_in_the_default_queue(
    empty_database_url: str,
) -> None:
    storage = SqlStorage.from_url(empty_database_url)
    try:
        await storage.upgrade("0010")
        task, schedule_id = make_task(), new_id()
        before_queues = {name: v for name, v in task_to_row(task).items() if name != "queue"}
        async with storage.engine.begin() as connection:
            await connection.execute(insert(tasks).values(before_queues))
            await connection.execute(
                insert(schedules).values(
                    id=schedule_id,
                    owner="alice",
                    cron="0 * * * *",
                    timezone="UTC",
                    kind="echo",
                    paused=False,
                    next_run_at=T0,
                    created_at=T0,
                    updated_at=T0,
                )
            )
        await storage.upgrade()
        async with storage.unit_of_work() as uow:
            stored = await uow.tasks.get(task.id)
        schedule = await storage.schedules().get("alice", schedule_id)
        assert stored is not None and stored.queue == DEFAULT_QUEUE
        assert schedule is not None and schedule.task.queue == DEFAULT_QUEUE
    finally:
        await storage.close()


async def test_processes_starting_together_migrate_once(empty_database_url: str) -> None:
    storages = [SqlStorage.from_url(empty_database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(storage.upgrade() for storage in storages))
        assert await tables(storages[0]) == {"tasks", "outbox", "workers", "schedules", "leases"}
        assert not await storages[0].migrations_pending()
    finally:
        for storage in storages:
            await storage.close()
