"""The Pub/Sub emulator for tests: one per test session, in this process, on a free port;
each test uses a project of its own so tests never see each other's messages."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from google.api_core.exceptions import AlreadyExists
from google.cloud import pubsub_v1

from tests.pubsub_emulator import PubSubEmulator


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    emulator = PubSubEmulator().start()
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
    yield emulator
    if previous is None:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
    else:
        os.environ["PUBSUB_EMULATOR_HOST"] = previous
    emulator.stop()


def new_project() -> str:
    return f"taskport-test-{uuid.uuid4().hex[:10]}"


def pull_all(subscription_path: str) -> list[pubsub_v1.subscriber.message.Message]:
    """Pulls and acks whatever the subscription holds now."""
    with pubsub_v1.SubscriberClient() as client:
        response = client.pull(subscription=subscription_path, max_messages=100)
        if response.received_messages:
            client.acknowledge(
                subscription=subscription_path,
                ack_ids=[received.ack_id for received in response.received_messages],
            )
        return list(response.received_messages)


def subscribe(topic_path: str) -> str:
    """A pull subscription of its own to ``topic_path`` (created if missing), as a
    subscriber of task events makes one; returns its path."""
    project = topic_path.split("/")[1]
    path = f"projects/{project}/subscriptions/listener-{uuid.uuid4().hex[:10]}"
    with pubsub_v1.PublisherClient() as publisher, contextlib.suppress(AlreadyExists):
        publisher.create_topic(name=topic_path)
    with pubsub_v1.SubscriberClient() as client:
        client.create_subscription(name=path, topic=topic_path)
    return path
