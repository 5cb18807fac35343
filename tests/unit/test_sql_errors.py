"""How the SQL storage reports the database's errors: an outage is a passing
``StorageUnavailable``; a statement the database refuses is a bug, logged as well."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import exc

from adapters.storage.sql.engine import translated_errors
from application.errors import StorageUnavailable


class DriverError(Exception):
    """An error of SQLAlchemy's asyncpg adapter, which carries PostgreSQL's SQLSTATE."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def wrapped(message: str, sqlstate: str) -> exc.DBAPIError:
    """As SQLAlchemy raises an asyncpg error it has no class for: a plain DBAPIError."""
    return exc.DBAPIError("SELECT 1", {}, DriverError(message, sqlstate))


@pytest.mark.parametrize(
    ("message", "sqlstate"),
    [
        ("the database system is shutting down", "57P03"),
        ("the database system is starting up", "57P03"),
        ("terminating connection due to administrator command", "57P01"),
        ("sorry, too many clients already", "53300"),
        ("connection failure", "08006"),
    ],
)
def test_a_database_restarting_or_full_is_unavailable_without_an_error_logged(
    message: str, sqlstate: str, caplog: pytest.LogCaptureFixture
) -> None:
    refused = pytest.raises(StorageUnavailable)
    with caplog.at_level(logging.ERROR), refused as raised, translated_errors():
        raise wrapped(message, sqlstate)
    assert message in str(raised.value)
    assert caplog.records == []


def test_a_statement_the_database_refuses_is_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(StorageUnavailable), translated_errors():
        raise wrapped("division by zero", "22012")
    assert [record.message for record in caplog.records] == ["unexpected database error"]
