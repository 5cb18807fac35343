"""The outbox prune, wired by the real container over SQLite (the storage that keeps sent
messages when told to) with a fake clock; its settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dependency_injector import providers
from pydantic import ValidationError
from sqlalchemy import select

from adapters.storage.sql.schema import outbox
from entrypoints.container import Container, create_container
from entrypoints.settings import Settings
from tests.factories import FakeClock, make_message


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def app(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Container]:
    settings = Settings(
        storage_url=f"sqlite:///{tmp_path / 'taskport.db'}", outbox_retention_seconds=3600
    )
    container = create_container(settings)
    container.clock.override(providers.Object(clock))
    await container.storage().upgrade()
    yield container
    await container.storage().close()


async def test_messages_sent_longer_ago_than_the_retention_are_deleted_in_batches(
    app: Container, clock: FakeClock
) -> None:
    waiting, *sent = [make_message() for _ in range(4)]
    async with app.uow()() as uow:
        for message in (waiting, *sent):
            await uow.outbox.put(message)
        await uow.commit()
    async with app.uow()() as uow:
        await uow.outbox.mark_sent(sent)
        await uow.commit()
    clock.current = datetime.now(UTC)
    prune = app.prune_outbox()
    assert await prune(limit=2) == 0  # sent within the retention
    clock.advance(hours=1, seconds=1)
    assert [await prune(limit=2) for _ in range(3)] == [2, 1, 0]
    async with app.uow()() as uow:
        assert [m.id for m in await uow.outbox.pending(10)] == [waiting.id]


async def test_by_default_a_sent_message_leaves_no_row(tmp_path: Path) -> None:
    container = create_container(Settings(storage_url=f"sqlite:///{tmp_path / 'taskport.db'}"))
    storage = container.storage()
    await storage.upgrade()
    try:
        sent, waiting = make_message(), make_message()
        async with container.uow()() as uow:
            await uow.outbox.put(sent)
            await uow.outbox.put(waiting)
            await uow.commit()
        async with container.uow()() as uow:
            await uow.outbox.mark_sent([sent])
            await uow.commit()
        rows = await storage.read_alone(select(outbox.c.id))
        assert [row.id for row in rows] == [waiting.id]
    finally:
        await storage.close()


def test_sent_messages_are_not_kept_by_default() -> None:
    assert Settings().outbox_retention_seconds == 0
    assert not Settings().keeps_sent_messages
    assert Settings(outbox_retention_seconds=60).keeps_sent_messages


@pytest.mark.parametrize("seconds", ["-1", "-60"])
def test_a_negative_retention_is_refused(seconds: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKPORT_OUTBOX_RETENTION_SECONDS", seconds)
    with pytest.raises(ValidationError, match="outbox_retention_seconds"):
        Settings()
