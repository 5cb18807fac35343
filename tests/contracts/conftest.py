"""Every adapter of a port runs the same contract suite: add yours to the params."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from adapters.brokers.memory import MemoryBroker
from adapters.brokers.pubsub import PubSubConsumer, PubSubOptions, PubSubPublisher
from adapters.brokers.rabbitmq import RabbitMqConsumer, RabbitMqOptions, RabbitMqPublisher
from adapters.storage.memory import MemoryStorage
from adapters.storage.mongo import MongoStorage
from adapters.storage.sql import SqlStorage
from tests.databases import emptied, migrated_sqlite
from tests.pubsub import new_project, pubsub_emulator, pull_all, subscribe  # noqa: F401
from tests.rabbitmq import (  # noqa: F401 (a fixture)
    broker_url,
    listen,
    rabbitmq_vhost,
    read_events,
    read_queue,
)

STORAGES = ["memory", "sqlite", "postgresql", "mongo"]
BROKERS = ["memory", "rabbitmq", "rabbitmq-classic", "pubsub"]


@pytest.fixture(params=STORAGES)
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        store: Any = MemoryStorage()
    elif request.param == "mongo":
        store = MongoStorage.from_url(request.getfixturevalue("mongo_url"))
        await store.prepare()
    elif request.param == "sqlite":
        store = await migrated_sqlite(request.getfixturevalue("tmp_path") / "taskport.db")
    else:
        store = await emptied(SqlStorage.from_url(request.getfixturevalue("postgres_url")))
    yield store
    await store.close()


Heard = list[tuple[bytes, dict[str, str]]]


QUEUES = ("default", "images")
"""The queues of the deployment every broker under test serves."""


class BrokerUnderTest:
    """A broker as the contract suite sees it: a publisher, fresh consumers of the queues
    given (all of ``QUEUES`` by default), a view of the dead-letter destination and, where
    other systems can subscribe to task events, what a subscriber of every event heard so
    far (each body with its ``type``, ``kind`` and ``task_id`` as the broker tells them)."""

    def __init__(
        self,
        publisher: Any,
        make_consumer: Callable[..., Any],
        dead_letters: Callable[[], Awaitable[list[bytes]]],
        events_heard: Callable[[], Awaitable[Heard]] | None = None,
    ) -> None:
        self.publisher = publisher
        self.make_consumer = make_consumer
        self.dead_letters = dead_letters
        self.events_heard = events_heard


@pytest.fixture(params=BROKERS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerUnderTest]:
    if request.param == "memory":
        memory = MemoryBroker(QUEUES)

        def take(queues: tuple[str, ...] | None = None) -> MemoryBroker:
            memory.consume_only(queues or QUEUES)
            return memory

        async def dead_letters() -> list[bytes]:
            return [letter.body for letter in memory.dead_letters]

        yield BrokerUnderTest(memory, take, dead_letters)
        await memory.close()
    elif request.param == "pubsub":
        request.getfixturevalue("pubsub_emulator")
        options = PubSubOptions(new_project(), create=True, events=True, queues=QUEUES)
        async for under_test in _pubsub(options):
            yield under_test
    else:
        queue_type = "classic" if request.param.endswith("classic") else "quorum"
        url = broker_url(request.getfixturevalue("rabbitmq_vhost"), queue_type)
        async for under_test in _rabbitmq(RabbitMqOptions.from_url(url, QUEUES)):
            yield under_test


async def _rabbitmq(options: RabbitMqOptions) -> AsyncIterator[BrokerUnderTest]:
    publisher = RabbitMqPublisher(options)
    consumers: list[RabbitMqConsumer] = []

    def make_consumer(queues: tuple[str, ...] | None = None) -> RabbitMqConsumer:
        consumers.append(RabbitMqConsumer(options, queues))
        return consumers[-1]

    async def dead_letters() -> list[bytes]:
        return await read_queue(options.url, options.topology.dead_letter_queue)

    listener = await asyncio.to_thread(listen, options.url, options.topology.events_exchange, "#")
    heard: Heard = []

    async def events_heard() -> Heard:
        for body, route in await read_events(options.url, listener):
            assert route["routing_key"] == f"{route['type']}.{route['kind']}"
            heard.append((body, {name: route[name] for name in ("type", "kind", "task_id")}))
        return heard

    yield BrokerUnderTest(publisher, make_consumer, dead_letters, events_heard)
    for consumer in consumers:
        await consumer.close()
    await publisher.close()


async def _pubsub(options: PubSubOptions) -> AsyncIterator[BrokerUnderTest]:
    publisher = PubSubPublisher(options)
    consumers: list[PubSubConsumer] = []
    dead: list[bytes] = []

    def make_consumer(queues: tuple[str, ...] | None = None) -> PubSubConsumer:
        consumers.append(PubSubConsumer(options, queues))
        return consumers[-1]

    async def dead_letters() -> list[bytes]:
        pulled = await asyncio.to_thread(pull_all, options.dead_letter_subscription_path)
        dead.extend(received.message.data for received in pulled)
        return dead

    listener = await asyncio.to_thread(subscribe, options.events_topic_path)
    heard: Heard = []

    async def events_heard() -> Heard:
        for received in await asyncio.to_thread(pull_all, listener):
            attributes = received.message.attributes
            heard.append(
                (received.message.data, {n: attributes[n] for n in ("type", "kind", "task_id")})
            )
        return heard

    yield BrokerUnderTest(publisher, make_consumer, dead_letters, events_heard)
    for consumer in consumers:
        await consumer.close()
    await publisher.close()
