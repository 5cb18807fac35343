"""Datetimes on SQLite: the text SQLAlchemy's DATETIME writes, so rows written before read
the same; aware UTC read back; naive datetimes refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite.base import DATETIME

from adapters.storage.sql.schema import UtcDateTime

SQLITE = sqlite.dialect()
VALUES = [
    datetime(2026, 11, 23, 15, 0, 0, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(2026, 6, 1, 2, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
]


@pytest.mark.parametrize("value", VALUES, ids=str)
def test_sqlite_text_is_what_sqlalchemy_writes_and_reads_back_in_utc(value: datetime) -> None:
    to_text = UtcDateTime().bind_processor(SQLITE)
    from_text = UtcDateTime().result_processor(SQLITE, None)
    written = to_text(value)
    assert written == DATETIME().bind_processor(SQLITE)(value.astimezone(UTC).replace(tzinfo=None))
    read = from_text(written)
    assert read == value
    assert read.tzinfo is UTC


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        UtcDateTime().bind_processor(SQLITE)(datetime(2026, 1, 1))
