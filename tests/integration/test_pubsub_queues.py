"""Named queues on Pub/Sub: each queue has a topic and a subscription of its own, a worker
streams from the subscriptions of its queues, and a push subscription pushes each queue's
messages naming the queue's subscription."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import attrs
import pytest
from google.cloud import pubsub_v1

from adapters.brokers.pubsub import PubSubConsumer, PubSubOptions, PubSubPublisher
from application.errors import BrokerUnavailable
from application.messages import task_topic
from tests.consuming import consuming
from tests.e2e.tiny_http import TinyHttpServer
from tests.factories import make_message
from tests.polling import eventually
from tests.pubsub import new_project, pull_all

QUEUES = ("default", "images")


def body(queue: str, n: int = 0) -> bytes:
    return json.dumps({"queue": queue, "n": n}).encode()


@pytest.fixture
def options(pubsub_emulator: Any) -> PubSubOptions:
    return PubSubOptions(new_project(), create=True, queues=QUEUES)


@pytest.fixture
async def publisher(options: PubSubOptions) -> AsyncIterator[PubSubPublisher]:
    publisher = PubSubPublisher(options)
    yield publisher
    await publisher.close()


@pytest.fixture
async def consumers(options: PubSubOptions) -> AsyncIterator[Any]:
    """Makes consumers of the queues given; closes them at the end."""
    made: list[PubSubConsumer] = []

    def make(queues: tuple[str, ...] | None = None) -> PubSubConsumer:
        made.append(PubSubConsumer(options, queues))
        return made[-1]

    yield make
    for consumer in made:
        await consumer.close()


def recorder(received: list[bytes]) -> Any:
    async def ack(delivery: Any) -> None:
        received.append(delivery.body)
        await delivery.ack()

    return ack


async def test_a_message_of_a_queue_reaches_the_consumers_of_that_queue_only(
    publisher: PubSubPublisher, consumers: Any
) -> None:
    images: list[bytes] = []
    defaults: list[bytes] = []
    await publisher.publish(
        [
            make_message(body("images"), topic=task_topic("images")),
            make_message(body("default"), topic=task_topic("default")),
        ]
    )
    async with (
        consuming(consumers(("images",)), recorder(images)),
        consuming(consumers(("default",)), recorder(defaults)),
    ):
        await eventually(lambda: images and defaults)
    assert (images, defaults) == ([body("images")], [body("default")])


async def test_a_consumer_of_both_queues_gets_the_messages_of_both(
    publisher: PubSubPublisher, consumers: Any
) -> None:
    published = [
        make_message(body(QUEUES[n % 2], n), topic=task_topic(QUEUES[n % 2])) for n in range(6)
    ]
    received: list[bytes] = []
    await publisher.publish(published)
    async with consuming(consumers(QUEUES), recorder(received)):
        await eventually(lambda: len(received) == 6)
    assert sorted(received) == sorted(message.body for message in published)


async def test_a_consumer_made_without_queues_consumes_every_queue(
    options: PubSubOptions, consumers: Any
) -> None:
    assert consumers().subscriptions == (
        options.subscription_path,
        options.subscription_path_for("images"),
    )


async def test_prefetch_bounds_the_unsettled_deliveries_of_each_queue(
    publisher: PubSubPublisher, consumers: Any
) -> None:
    unsettled: dict[str, int] = dict.fromkeys(QUEUES, 0)
    peaks: dict[str, int] = dict.fromkeys(QUEUES, 0)
    release = asyncio.Event()
    done = 0

    async def held(delivery: Any) -> None:
        nonlocal done
        queue = json.loads(delivery.body)["queue"]
        unsettled[queue] += 1
        peaks[queue] = max(peaks[queue], unsettled[queue])
        await release.wait()
        unsettled[queue] -= 1
        done += 1
        await delivery.ack()

    await publisher.publish(
        [make_message(body(q, n), topic=task_topic(q)) for q in QUEUES for n in range(4)]
    )
    async with consuming(consumers(QUEUES), held, prefetch=2):
        await eventually(lambda: unsettled == dict.fromkeys(QUEUES, 2))
        release.set()
        await eventually(lambda: done == 8)
    assert peaks == dict.fromkeys(QUEUES, 2)


async def test_a_nacked_message_of_a_queue_comes_back_on_that_queue(
    publisher: PubSubPublisher, consumers: Any
) -> None:
    counts: list[int] = []
    defaults: list[bytes] = []

    async def nack_first(delivery: Any) -> None:
        counts.append(delivery.delivery_count)
        if delivery.delivery_count == 1:
            await delivery.nack(timedelta(seconds=0))
        else:
            await delivery.ack()

    await publisher.publish([make_message(body("images"), topic=task_topic("images"))])
    async with (
        consuming(consumers(("images",)), nack_first),
        consuming(consumers(("default",)), recorder(defaults)),
    ):
        await eventually(lambda: counts == [1, 2])
    assert defaults == []


async def test_a_rejected_message_of_a_queue_goes_to_the_dead_letters_naming_its_subscription(
    options: PubSubOptions, publisher: PubSubPublisher, consumers: Any
) -> None:
    async def reject(delivery: Any) -> None:
        await delivery.reject("cannot decode")

    dead: list[Any] = []

    async def dead_lettered() -> bool:
        pulled = await asyncio.to_thread(pull_all, options.dead_letter_subscription_path)
        dead.extend(received.message for received in pulled)
        return bool(dead)

    await publisher.publish([make_message(b"poison", topic=task_topic("images"))])
    async with consuming(consumers(("images",)), reject):
        await eventually(dead_lettered)
    [copy] = dead
    assert copy.data == b"poison"
    assert copy.attributes["taskport_source_subscription"] == options.subscription_path_for(
        "images"
    )
    assert copy.attributes["taskport_dead_letter_reason"] == "cannot decode"


async def test_a_message_of_a_queue_outside_the_deployment_is_refused(
    publisher: PubSubPublisher,
) -> None:
    with pytest.raises(ValueError, match="video"):
        await publisher.publish([make_message(b"{}", topic=task_topic("video"))])


async def test_the_health_checks_name_a_missing_queue_topic_and_subscription(
    options: PubSubOptions,
) -> None:
    """A process given one more queue than was provisioned says which one is missing."""
    grown = attrs.evolve(options, create=False, queues=(*QUEUES, "video"))
    provisioning = PubSubPublisher(options)
    publisher, consumer = PubSubPublisher(grown), PubSubConsumer(grown, ("video",))
    try:
        await provisioning.check()  # provisions default and images
        with pytest.raises(BrokerUnavailable, match=f"{options.topic}-video"):
            await publisher.check()
        with pytest.raises(BrokerUnavailable, match=f"{options.subscription}-video"):
            await consumer.check()
    finally:
        for closing in (provisioning, publisher, consumer):
            await closing.close()


def test_a_named_queue_has_a_topic_and_subscription_after_the_default_ones() -> None:
    options = PubSubOptions.from_url("pubsub://acme?topic=jobs", queues=QUEUES)
    assert options.queues == QUEUES
    assert options.topic_path_for("default") == options.topic_path == "projects/acme/topics/jobs"
    assert options.topic_path_for("images") == "projects/acme/topics/jobs-images"
    assert options.subscription_path_for("default") == "projects/acme/subscriptions/jobs-worker"
    assert (
        options.subscription_path_for("images") == "projects/acme/subscriptions/jobs-worker-images"
    )


def test_a_url_alone_names_the_default_queue() -> None:
    assert PubSubOptions.from_url("pubsub://acme").queues == ("default",)


@pytest.mark.parametrize(
    ("url", "queues", "error"),
    [
        ("pubsub://acme", (), "at least one queue"),
        ("pubsub://acme", ("default", "Images"), "'Images' must be 1-40 characters"),
        ("pubsub://acme", ("images", "images"), "named twice"),
        ("pubsub://acme?dead_letter_topic=taskport-tasks-dead", ("dead",), "dead-letter"),
        ("pubsub://acme?events_topic=taskport-tasks-events", ("events",), "events topics"),
        ("pubsub://acme?dead_letter_topic=taskport-tasks-worker-x", ("x",), "subscription"),
    ],
)
def test_queues_that_cannot_be_provisioned_are_refused(
    url: str, queues: tuple[str, ...], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        PubSubOptions.from_url(url, queues=queues)


@pytest.mark.parametrize("queues", [("video",), ("default", "video"), ()])
def test_a_consumer_of_a_queue_outside_the_deployment_is_refused(queues: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="deployment's queues"):
        PubSubConsumer(PubSubOptions("acme", queues=QUEUES), queues)


def test_from_url_makes_a_consumer_of_the_queues_asked_for() -> None:
    consumer = PubSubConsumer.from_url("pubsub://acme", queues=QUEUES, consumed=("images",))
    assert consumer.subscriptions == ("projects/acme/subscriptions/taskport-tasks-worker-images",)
    every = PubSubConsumer.from_url("pubsub://acme", queues=QUEUES)
    assert len(every.subscriptions) == 2


@pytest.fixture
async def endpoint() -> AsyncIterator[TinyHttpServer]:
    """An HTTP server that takes every push (204)."""
    server = TinyHttpServer()
    server.routes["/webhook/pubsub"] = lambda _: (204, {}, b"")
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield server


async def test_provisioning_with_a_push_endpoint_makes_a_push_subscription_per_queue(
    pubsub_emulator: Any, endpoint: TinyHttpServer
) -> None:
    push = endpoint.url("/webhook/pubsub")
    options = PubSubOptions(new_project(), create=True, queues=QUEUES, push_endpoint=push)
    publisher = PubSubPublisher(options)
    await publisher.publish(
        [make_message(body(queue), topic=task_topic(queue)) for queue in QUEUES]
    )
    with pubsub_v1.SubscriberClient() as client:
        for queue in QUEUES:
            subscription = client.get_subscription(
                subscription=options.subscription_path_for(queue)
            )
            assert subscription.topic == options.topic_path_for(queue)
            assert subscription.push_config.push_endpoint == push
            assert subscription.dead_letter_policy.dead_letter_topic == (
                options.dead_letter_topic_path
            )
    await eventually(lambda: len(endpoint.requests) == 2)
    pushed = {
        json.loads(request["body"])["subscription"]: json.loads(request["body"])["message"]
        for request in endpoint.requests
    }
    assert sorted(pushed) == sorted(options.subscription_path_for(queue) for queue in QUEUES)
    for queue in QUEUES:
        data = pushed[options.subscription_path_for(queue)]["data"]
        assert json.loads(base64.b64decode(data))["queue"] == queue
    await publisher.close()
