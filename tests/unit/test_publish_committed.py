"""The relay's fast path publishes every message handed to it, however the handovers fall."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from adapters.storage.memory import MemoryStorage
from application.errors import PartlyPublished
from application.messages import task_topic
from application.ports.outbox import OutboxMessage
from application.use_cases.publish_committed import PublishCommittedHandler
from application.use_cases.relay_outbox import RelayOutboxHandler
from tests.factories import T0, FakeClock, make_message
from tests.polling import eventually


class Publisher:
    def __init__(self) -> None:
        self.published: list[OutboxMessage] = []

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        self.published.extend(messages)


class MarkedStorage:
    """The in-memory storage; ``marked`` is set by every commit that marks messages sent,
    ``marks`` lists how many each one marked."""

    def __init__(self) -> None:
        self.storage = MemoryStorage()
        self.marked = asyncio.Event()
        self.marks: list[int] = []

    def unit_of_work(self) -> Any:
        uow = self.storage.unit_of_work()
        commit = uow.commit

        async def marking(*, durable: bool = True) -> None:
            self.marks.append(len(uow.sent_messages))
            await commit(durable=durable)
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


async def test_the_batches_published_within_the_mark_delay_are_marked_sent_together() -> None:
    storage, publisher = MarkedStorage(), Publisher()
    relay = PublishCommittedHandler(
        storage.unit_of_work, publisher, publishers=1, mark_delay=timedelta(seconds=1)
    )
    messages = [make_message() for _ in range(3)]
    await _stored(storage.storage, *messages)
    for message in messages:  # each published alone, in a batch of its own
        relay.notify([message])
        await eventually(lambda message=message: message in publisher.published, within=1)
    await relay.drain()
    assert storage.marks == [3]
    assert await _pending(storage.storage) == []


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


class TasksOnlyPublisher(Publisher):
    """Takes task messages and fails events, as Pub/Sub does while its events topic is
    missing."""

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        taken = [message for message in messages if message.topic == "tasks"]
        self.published.extend(taken)
        if len(taken) < len(messages):
            raise PartlyPublished(
                f"{len(messages) - len(taken)} of {len(messages)} messages not published",
                published=frozenset(message.id for message in taken),
            )


async def _stored(storage: MemoryStorage, *messages: OutboxMessage) -> None:
    async with storage.unit_of_work() as uow:
        for message in messages:
            await uow.outbox.put(message)
        await uow.commit()


async def _pending(storage: MemoryStorage) -> list[OutboxMessage]:
    async with storage.unit_of_work() as uow:
        return list(await uow.outbox.pending(100))


async def test_the_fast_path_marks_sent_what_the_broker_took_of_a_batch_it_failed() -> None:
    storage, publisher = MemoryStorage(), TasksOnlyPublisher()
    event, task = make_message(topic="events"), make_message()
    await _stored(storage, event, task)
    relay = PublishCommittedHandler(storage.unit_of_work, publisher)
    relay.notify([event, task])
    await relay.drain()
    assert publisher.published == [task]
    assert await _pending(storage) == [event]


async def test_the_sweep_marks_sent_what_the_broker_took_and_reports_the_rest() -> None:
    storage, publisher = MemoryStorage(), TasksOnlyPublisher()
    events = [make_message(topic="events") for _ in range(3)]
    task = make_message()
    await _stored(storage, *events, task)
    sweep = RelayOutboxHandler(storage.unit_of_work, publisher, FakeClock(T0), timedelta(0))
    with pytest.raises(PartlyPublished, match="3 of 4 messages not published"):
        await sweep()
    assert publisher.published == [task]
    assert await _pending(storage) == events


async def test_run_messages_of_a_queue_the_deployment_lacks_do_not_hold_the_sweep(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A queue taken out of TASKPORT_QUEUES with tasks still in it: no broker here carries
    their messages, and the sweep goes on with the others."""
    storage, publisher = MemoryStorage(), Publisher()
    stranded = [make_message(topic=task_topic("images")) for _ in range(3)]
    others = [make_message(), make_message(topic=task_topic("reports"))]
    await _stored(storage, *stranded, *others)
    sweep = RelayOutboxHandler(
        storage.unit_of_work, publisher, FakeClock(T0), timedelta(0), ("default", "reports")
    )
    with caplog.at_level(logging.ERROR, "taskport.relay"):
        assert await sweep(limit=4) == 4
    assert "3 run messages not published: their queues (images) are not in" in caplog.text
    assert publisher.published == others[:1]
    assert await sweep() == 1
    assert publisher.published == others
    assert await _pending(storage) == []


async def test_the_fast_path_sets_aside_the_run_messages_of_a_queue_the_deployment_lacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage, publisher = MemoryStorage(), Publisher()
    stranded, task = make_message(topic=task_topic("images")), make_message()
    await _stored(storage, stranded, task)
    relay = PublishCommittedHandler(storage.unit_of_work, publisher, queues=("default",))
    with caplog.at_level(logging.ERROR, "taskport.relay"):
        relay.notify([stranded, task])
        await relay.drain()
    assert publisher.published == [task]
    assert await _pending(storage) == []
    assert "queues (images)" in caplog.text
