"""With Pub/Sub unreachable, the adapter says so as ``BrokerUnavailable``, promptly."""

from __future__ import annotations

import pytest

from adapters.brokers.pubsub import PubSubOptions, PubSubPublisher
from application.errors import BrokerUnavailable
from tests.e2e.server import free_port
from tests.factories import make_message


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
