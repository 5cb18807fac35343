"""The database schema at start: migrate it, or refuse to run on an outdated one; on
MongoDB, create the indexes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential,
)

from adapters.storage.sql import SqlStorage
from application.errors import StorageRefused, StorageUnavailable
from entrypoints.settings import Settings, url_scheme

if TYPE_CHECKING:
    from adapters.storage.mongo import MongoStorage

logger = logging.getLogger("taskport.schema")

STARTUP_WAIT_SECONDS = 30
# A database still starting is waited for; one that refuses the settings is not.
_waiting_while_starting = retry(
    retry=retry_if_exception_type(StorageUnavailable) & retry_if_not_exception_type(StorageRefused),
    stop=stop_after_delay(STARTUP_WAIT_SECONDS),
    wait=wait_exponential(multiplier=0.2, max=5),
    before_sleep=before_sleep_log(logger, logging.WARNING),
    reraise=True,
)


class PendingMigrations(RuntimeError):
    """The database schema is older than this version of Taskport."""


async def prepare_schema(storage: object, settings: Settings) -> None:
    """Brings an SQL storage's schema to head when ``migrates_on_start``; otherwise refuses
    to start while migrations are pending; creates a MongoDB storage's indexes. Waits a
    little for a database still starting."""
    if isinstance(storage, SqlStorage):
        await _prepare(storage, settings)
    elif url_scheme(settings.storage_url) == "mongodb":
        from adapters.storage.mongo import MongoStorage  # imported only when chosen

        if isinstance(storage, MongoStorage):
            await _create_indexes(storage)


@_waiting_while_starting
async def _create_indexes(storage: MongoStorage) -> None:
    await storage.prepare()


@_waiting_while_starting
async def _prepare(storage: SqlStorage, settings: Settings) -> None:
    if settings.migrates_on_start:
        await storage.upgrade()
        return
    if await storage.migrations_pending():
        current = await storage.current_revision() or "empty"
        raise PendingMigrations(
            f"the database schema ({current}) is behind this version of Taskport: run "
            "`taskport db upgrade`, or set TASKPORT_MIGRATE_ON_START=true"
        )
