"""Choosing the storage from settings: URL schemes, drivers and migrate-on-start."""

from __future__ import annotations

import pytest
from pymongo.errors import OperationFailure

from adapters.storage.memory import MemoryStorage
from adapters.storage.mongo import MongoStorage
from adapters.storage.mongo.client import translated_errors
from adapters.storage.sql import SqlStorage
from adapters.storage.sql.engine import async_url
from application.errors import StorageRefused, StorageUnavailable
from entrypoints.container import create_container
from entrypoints.settings import Settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./data/taskport.db", "sqlite+aiosqlite:///./data/taskport.db"),
        ("sqlite+aiosqlite:////tmp/t.db", "sqlite+aiosqlite:////tmp/t.db"),
        ("postgresql://u:p@db:5432/tasks", "postgresql+asyncpg://u:p@db:5432/tasks"),
        ("postgresql+asyncpg://db/tasks", "postgresql+asyncpg://db/tasks"),
    ],
)
def test_storage_urls_name_their_async_driver(url: str, expected: str) -> None:
    assert async_url(url).render_as_string(hide_password=False) == expected


def test_the_default_storage_is_a_local_sqlite_file() -> None:
    settings = Settings()
    assert settings.storage_url == "sqlite:///./data/taskport.db"
    assert settings.migrates_on_start


@pytest.mark.parametrize(
    ("url", "setting", "migrates"),
    [
        ("sqlite:///t.db", None, True),
        ("postgresql://db/tasks", None, False),
        ("postgresql://db/tasks", True, True),
        ("sqlite:///t.db", False, False),
    ],
)
def test_migrate_on_start_defaults_to_on_for_sqlite_only(
    url: str, setting: bool | None, migrates: bool
) -> None:
    assert Settings(storage_url=url, migrate_on_start=setting).migrates_on_start is migrates


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", MemoryStorage),
        ("sqlite:///./t.db", SqlStorage),
        ("postgresql://db/tasks", SqlStorage),
        ("mongodb://db:27017/tasks", MongoStorage),
    ],
)
def test_the_url_scheme_chooses_the_storage(url: str, kind: type) -> None:
    container = create_container(Settings(storage_url=url))
    assert isinstance(container.storage(), kind)


async def test_a_mongodb_url_names_the_database_and_srv_urls_are_accepted() -> None:
    storage = MongoStorage.from_url("mongodb://db:27017/orders")
    assert storage.tasks.full_name == "orders.tasks"
    await storage.close()
    create_container(Settings(storage_url="mongodb+srv://cluster.example.com/orders"))


@pytest.mark.parametrize(("code", "refused"), [(18, True), (13, True), (11600, False)])
def test_mongodb_refusing_the_settings_is_told_from_an_outage(code: int, refused: bool) -> None:
    """A wrong password (18) or a user without rights (13) stops the process at once, as on
    PostgreSQL; other failed operations are retried."""
    with pytest.raises(StorageUnavailable) as raised, translated_errors():
        raise OperationFailure("Authentication failed.", code=code)
    assert isinstance(raised.value, StorageRefused) is refused
