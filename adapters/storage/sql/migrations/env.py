"""Alembic environment: runs on a connection handed over by ``migrate.py`` or, from the
``alembic`` command line, on an async engine built from ``sqlalchemy.url``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from adapters.storage.sql.engine import async_url, create_engine
from adapters.storage.sql.schema import metadata

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_on_new_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on)
            await connection.commit()
    finally:
        await engine.dispose()


def main() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        assert url is not None, "set sqlalchemy.url to render SQL offline"
        context.configure(url=async_url(url), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    assert url is not None, "set sqlalchemy.url or pass a connection"
    asyncio.run(run_on_new_engine(url))


main()
