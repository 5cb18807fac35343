"""The relay's fast path publishes every message handed to it, however the handovers fall."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from adapters.storage.memory import MemoryStorage
from application.ports.outbox import OutboxMessage
from application.use_cases.publish_committed import PublishCommittedHandler
from tests.factories import make_message
from tests.polling import eventually


class Publisher:
    def __init__(self) -> None:
        self.published: list[OutboxMessage] = []

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        self.published.extend(messages)


class MarkedStorage:
    """The in-memory storage; ``marked`` is set by every commit that marks messages sent."""

    def __init__(self) -> None:
        self.storage = MemoryStorage()
        self.marked = asyncio.Event()

    def unit_of_work(self) -> Any:
        uow = self.storage.unit_of_work()
        commit = uow.commit

        async def marking() -> None:
            await commit()
            self.marked.set()

        uow.commit = marking
        return uow


async def test_messages_handed_over_as_the_last_publish_ends_are_published() -> None:
    storage, publisher = MarkedStorage(), Publisher()
    relay = PublishCommittedHandler(storage.unit_of_work, publisher, publishers=1)
    first, second = make_message(), make_message()
    relay.notify([first])
    async with asyncio.timeout(2):
        await storage.marked.wait()
        # The publishing task is finishing in this very turn of the loop: the next
        # handover must not wait for it to be gone.
        relay.notify([second])
    await eventually(lambda: second in publisher.published, within=2)
    await relay.drain()
    assert publisher.published == [first, second]


class StuckPublisher(Publisher):
    """Takes messages only once ``unblocked`` is set, as a broker under a resource alarm."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.unblocked = asyncio.Event()

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        self.entered.set()
        await self.unblocked.wait()
        await super().publish(messages)


async def test_a_stuck_broker_leaves_messages_to_the_sweep_beyond_the_bound() -> None:
    storage, publisher = MarkedStorage(), StuckPublisher()
    relay = PublishCommittedHandler(storage.unit_of_work, publisher, publishers=1, max_waiting=3)
    taken = make_message()
    relay.notify([taken])
    await asyncio.wait_for(publisher.entered.wait(), 2)  # stuck with the first message
    waiting = [make_message() for _ in range(3)]
    relay.notify(waiting)
    left = [make_message() for _ in range(3)]
    for message in left:
        relay.notify([message])
    publisher.unblocked.set()
    await relay.drain()
    assert publisher.published == [taken, *waiting]
    relay.notify(left)  # caught up (none waiting): handovers are taken again
    await relay.drain()
    assert publisher.published == [taken, *waiting, *left]
