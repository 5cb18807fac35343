"""The PyMongo async client, the indexes, and the translation of driver errors into
application errors: nothing above this package sees a driver type."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from application.errors import StorageRefused, StorageUnavailable

logger = logging.getLogger("taskport.storage")

DEFAULT_DATABASE = "taskport"
SERVER_SELECTION_TIMEOUT_MS = 3000
"""An unreachable server is reported within seconds (503 + Retry-After), not waited on."""
CONNECT_TIMEOUT_MS = 3000
SOCKET_TIMEOUT_MS = 30000

Document = dict[str, Any]

REFUSING_CODES = frozenset({13, 18})
"""Unauthorized, AuthenticationFailed: the server answered, and refuses these settings
(a wrong user or password, a user without rights on the database)."""


def create_client(url: str) -> AsyncMongoClient[Document]:
    """``mongodb://host:port/database`` or ``mongodb+srv://...``; connects on first use.
    Timeouts given in the URL (``?serverSelectionTimeoutMS=...``) win over the defaults.
    ``ValueError`` for a URL PyMongo cannot read."""
    given = {name.lower() for name in parse_qs(urlsplit(url).query)}
    defaults: dict[str, Any] = {
        "serverSelectionTimeoutMS": SERVER_SELECTION_TIMEOUT_MS,
        "connectTimeoutMS": CONNECT_TIMEOUT_MS,
        "socketTimeoutMS": SOCKET_TIMEOUT_MS,
        "appname": "taskport",
    }
    options: dict[str, Any] = {
        name: value for name, value in defaults.items() if name.lower() not in given
    }
    try:
        return AsyncMongoClient(url, uuidRepresentation="standard", **options)
    except (ConfigurationError, ValueError) as error:
        # A URL the driver cannot read is a setting to correct, not a server to wait for.
        raise ValueError(str(error)) from error


def database_of(client: AsyncMongoClient[Document]) -> AsyncDatabase[Document]:
    return client.get_default_database(default=DEFAULT_DATABASE)


def _keyset(*prefix: str) -> list[tuple[str, int]]:
    return [(name, ASCENDING) for name in prefix] + [("_id", DESCENDING)]


def task_indexes(id_in_compound_indexes: bool) -> list[IndexModel]:
    """The indexes of the tasks collection. Keyset pages read (owner[, status | kind | queue
    | schedule_id], _id); a server that cannot index ``_id`` inside a compound index
    (nx-27017) gets the prefix."""

    def keyset(name: str, *prefix: str, **options: Any) -> IndexModel:
        keys = _keyset(*prefix) if id_in_compound_indexes else [(p, ASCENDING) for p in prefix]
        return IndexModel(keys, name=name, **options)

    return [
        keyset("owner_pages", "owner"),
        keyset("owner_status_pages", "owner", "status"),
        keyset("owner_kind_pages", "owner", "kind"),
        keyset("owner_queue_pages", "owner", "queue"),
        keyset(
            "owner_schedule_pages",
            "owner",
            "schedule_id",
            partialFilterExpression={"schedule_id": {"$type": "string"}},
        ),
        IndexModel([("status", ASCENDING), ("run_at", ASCENDING)], name="due_sweep"),
        IndexModel([("status", ASCENDING), ("updated_at", ASCENDING)], name="recovery_sweep"),
        IndexModel(
            [("owner", ASCENDING), ("idempotency_key", ASCENDING)],
            name="owner_idempotency_key",
            unique=True,
            partialFilterExpression={"idempotency_key": {"$type": "string"}},
        ),
        IndexModel(
            [("outbox_count", ASCENDING), ("outbox_since", ASCENDING)], name="outbox_pending"
        ),
    ]


OUTBOX_INDEXES = [IndexModel([("created_at", ASCENDING)], name="outbox_order")]
WORKER_INDEXES = [IndexModel([("started_at", DESCENDING)], name="workers_by_start")]


@contextmanager
def translated_errors() -> Iterator[None]:
    """Driver errors become ``StorageUnavailable`` (``StorageRefused`` when the server
    refuses the settings: waiting does not help); duplicate keys are left to the caller,
    which knows what they mean."""
    try:
        yield
    except DuplicateKeyError:
        raise
    except OperationFailure as error:
        if error.code in REFUSING_CODES:
            raise StorageRefused(_reason(error)) from error
        logger.error("unexpected MongoDB error", exc_info=error)
        raise StorageUnavailable(_reason(error)) from error
    except ConnectionFailure as error:
        raise StorageUnavailable(_reason(error)) from error
    except PyMongoError as error:
        logger.error("unexpected MongoDB error", exc_info=error)
        raise StorageUnavailable(_reason(error)) from error


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else 'no details'}"
