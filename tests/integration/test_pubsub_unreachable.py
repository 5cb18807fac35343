"""With Pub/Sub unreachable, or a topic it needs missing, the adapter says so as
``BrokerUnavailable``, promptly."""

from __future__ import annotations

import attrs
import pytest
from google.cloud import pubsub_v1

from adapters.brokers.pubsub import PubSubOptions, PubSubPublisher
from application.errors import BrokerUnavailable
from tests.e2e.server import free_port
from tests.factories import make_message
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
