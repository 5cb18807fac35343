"""PostgreSQL's hottest statements, run on asyncpg itself rather than through SQLAlchemy:
a submit's insert, a claim's read and the updates of claims and outcomes. SQLAlchemy added
0.2-0.3 ms to each of them here at low load (its execution context, the adapted cursor),
and three of them lie between a submit and its handler's start. The connection is still
the unit of work's, from SQLAlchemy's pool, in whatever transaction the unit holds."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

_NAMED = re.compile(r"(?<!:):(?!:)(\w+)")


class AsyncpgStatement:
    """A statement written with named parameters (``:name``), run with positional ones
    (``$1``), and prepared once per connection by asyncpg's statement cache."""

    def __init__(self, sql: str) -> None:
        names: dict[str, int] = {}

        def positional(match: re.Match[str]) -> str:
            index = names.setdefault(match.group(1), len(names) + 1)
            return f"${index}"

        self.sql = _NAMED.sub(positional, sql)
        self.names = list(names)

    async def fetch(
        self, connection: AsyncConnection, parameters: Mapping[str, Any]
    ) -> Sequence[asyncpg.Record]:
        """The rows of the statement (read by column name, as ``Row._mapping``)."""
        driver = await _driver_connection(connection)
        arguments = [parameters[name] for name in self.names]
        try:
            rows: list[asyncpg.Record] = await driver.fetch(self.sql, *arguments)
        except asyncpg.IntegrityConstraintViolationError:
            raise
        except Exception:
            # SQLAlchemy did not see the error: the connection, perhaps broken, must not go
            # back to the pool (SQLAlchemy discards it, and replaces it on the next use).
            await connection.invalidate()
            raise
        return rows


async def _driver_connection(connection: AsyncConnection) -> asyncpg.Connection:
    """asyncpg's connection under ``connection``. Read from the connection SQLAlchemy holds
    (0.4 µs here): ``get_raw_connection`` takes a greenlet for it (11 µs), which only a
    connection invalidated by an error needs, to be connected again."""
    held = connection.sync_connection
    if held is None or held.invalidated:
        return (await connection.get_raw_connection()).driver_connection
    return held.connection.driver_connection
