"""With Pub/Sub unreachable, a topic it needs missing, or no credentials to reach it, the
adapter says so as ``BrokerUnavailable``, promptly."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path

import attrs
import pytest
from google.cloud import pubsub_v1

from adapters.brokers.pubsub import PubSubConsumer, PubSubOptions, PubSubPublisher
from application.errors import BrokerUnavailable, PartlyPublished
from application.messages import EVENTS_TOPIC
from tests.e2e.server import free_port
from tests.factories import make_message
from tests.polling import eventually
from tests.pubsub import new_project


@pytest.fixture
def nothing_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")


@pytest.mark.usefixtures("nothing_listening")
async def test_the_health_check_reports_an_unreachable_pubsub() -> None:
    publisher = PubSubPublisher(PubSubOptions("taskport-unreachable"))
    with pytest.raises(BrokerUnavailable):
        await publisher.check()
    await publisher.close()


@pytest.mark.usefixtures("nothing_listening")
async def test_publishing_to_an_unreachable_pubsub_fails_within_its_timeout() -> None:
    publisher = PubSubPublisher(PubSubOptions("taskport-unreachable"), publish_timeout=1)
    with pytest.raises(BrokerUnavailable):
        await publisher.publish([make_message(b"{}")])
    await publisher.close()


@pytest.mark.usefixtures("pubsub_emulator")
async def test_the_health_check_reports_a_missing_events_topic_when_events_are_on() -> None:
    """Every event would fail to publish until someone created the topic."""
    options = PubSubOptions(new_project(), events=True)
    with pubsub_v1.PublisherClient() as client:
        client.create_topic(name=options.topic_path)
    publisher = PubSubPublisher(options)
    with pytest.raises(BrokerUnavailable, match="taskport-events"):
        await publisher.check()
    await PubSubPublisher(attrs.evolve(options, events=False)).check()
    with pubsub_v1.PublisherClient() as client:
        client.create_topic(name=options.events_topic_path)
    await publisher.check()
    await publisher.close()


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Google's client libraries outside the emulator, with credentials that cannot be
    found (as on a host where none were set up)."""
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))


@pytest.mark.usefixtures("no_credentials")
async def test_missing_credentials_are_reported_as_pubsub_unavailable() -> None:
    publisher = PubSubPublisher(PubSubOptions("taskport-no-credentials"))
    with pytest.raises(BrokerUnavailable, match="credentials"):
        await publisher.check()
    with pytest.raises(BrokerUnavailable, match="credentials"):
        await publisher.publish([make_message(b"{}")])
    await publisher.close()


@pytest.mark.usefixtures("no_credentials")
async def test_a_consumer_without_credentials_says_so_and_waits_for_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It does not end at once, leaving its worker registered and alive but consuming
    nothing, with no word of why."""
    consumer = PubSubConsumer(PubSubOptions("taskport-no-credentials"))

    async def never_called(delivery: object) -> None:
        raise AssertionError("nothing is delivered")

    with caplog.at_level(logging.WARNING, logger="taskport.pubsub"):
        consuming = asyncio.create_task(consumer.consume(never_called, prefetch=1))
        await eventually(lambda: consuming.done() or "credentials" in caplog.text)
        assert not consuming.done(), consuming
    await consumer.stop()
    await consuming
    await consumer.close()


@pytest.mark.usefixtures("pubsub_emulator")
async def test_with_the_events_topic_missing_task_messages_are_published_and_named() -> None:
    """So the relay marks them sent: the failing events do not hold back the tasks."""
    options = PubSubOptions(new_project(), events=True)
    with pubsub_v1.PublisherClient() as client:
        client.create_topic(name=options.topic_path)
    publisher = PubSubPublisher(options, publish_timeout=2)
    task = make_message(b"{}")
    event_body = {"type": "task.succeeded", "task": {"kind": "echo", "id": str(uuid.uuid4())}}
    event = make_message(json.dumps(event_body).encode(), topic=EVENTS_TOPIC)
    with pytest.raises(PartlyPublished, match="1 of 2 messages not published") as raised:
        await publisher.publish([event, task])
    assert raised.value.published == {task.id}
    await publisher.close()
