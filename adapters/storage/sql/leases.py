"""The leases table: one row per lease taken, each call one statement of its own."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, or_
from sqlalchemy.dialects import postgresql, sqlite

from adapters.storage.sql.schema import leases

if TYPE_CHECKING:
    from adapters.storage.sql.storage import SqlStorage


class SqlLeases:
    def __init__(self, storage: SqlStorage) -> None:
        self._storage = storage

    async def take(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        dialect = sqlite if self._storage.is_sqlite else postgresql
        insert = dialect.insert(leases).values(name=name, holder=holder, expires_at=until)
        # A row held by another whose time has not ended is left as it is: no row written.
        statement = insert.on_conflict_do_update(
            index_elements=["name"],
            set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
            where=or_(leases.c.holder == insert.excluded.holder, leases.c.expires_at <= now),
        )
        return await self._storage.write_alone(statement) == 1

    async def release(self, name: str, holder: str) -> None:
        await self._storage.write_alone(
            delete(leases).where(and_(leases.c.name == name, leases.c.holder == holder))
        )
