"""Integration tests run against real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import pytest

from tests.pubsub import pubsub_emulator
from tests.rabbitmq import rabbitmq_vhost

__all__ = ["pubsub_emulator", "rabbitmq_vhost"]

SQL_DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(params=SQL_DATABASES)
def empty_database_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty database, of each kind in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{request.getfixturevalue('tmp_path') / 'taskport.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url
