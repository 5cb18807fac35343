from __future__ import annotations

import pytest

from adapters.brokers.pubsub import PubSubConsumer, PubSubOptions, PubSubPublisher
from entrypoints.container import UnsupportedUrl, create_container
from entrypoints.settings import Settings


def test_a_bare_project_url_names_the_default_topics() -> None:
    options = PubSubOptions.from_url("pubsub://acme")
    assert options.topic_path == "projects/acme/topics/taskport-tasks"
    assert options.subscription_path == "projects/acme/subscriptions/taskport-tasks-worker"
    assert options.dead_letter_topic_path == "projects/acme/topics/taskport-dead-letters"
    assert options.events_topic_path == "projects/acme/topics/taskport-events"
    assert not options.create
    assert not options.events


def test_query_options_name_topics_and_provisioning() -> None:
    options = PubSubOptions.from_url(
        "pubsub://acme?topic=jobs&dead_letter_topic=jobs-dead&max_delivery_attempts=10"
        "&ack_deadline=120&min_backoff=0.5&max_backoff=30&push_endpoint=https://x/webhook"
        "&events_topic=jobs-events",
        create=True,
        events=True,
    )
    assert options.events_topic_path == "projects/acme/topics/jobs-events"
    assert options.events
    assert options.subscription == "jobs-worker"
    assert options.dead_letter_subscription_path == "projects/acme/subscriptions/jobs-dead"
    assert (options.max_delivery_attempts, options.ack_deadline_seconds) == (10, 120)
    assert (options.min_backoff_seconds, options.max_backoff_seconds) == (0.5, 30)
    assert options.push_endpoint == "https://x/webhook"
    assert options.create


@pytest.mark.parametrize(
    "url",
    [
        "pubsub://",
        "pubsub://acme?max_delivery_attempts=2",
        "pubsub://acme?ack_deadline=5",
        "pubsub://acme?min_backoff=10&max_backoff=1",
        "pubsub://acme?dead_letter_topic=taskport-tasks",
        "pubsub://acme?events_topic=taskport-tasks",
        "pubsub://acme?events_topic=taskport-dead-letters",
        "pubsub://acme?colour=blue",
    ],
)
def test_a_bad_pubsub_url_is_refused_at_start(url: str) -> None:
    with pytest.raises(UnsupportedUrl):
        create_container(Settings(storage_url="memory://", broker_url=url))


def test_the_container_chooses_pubsub_by_the_url_scheme() -> None:
    container = create_container(
        Settings(storage_url="memory://", broker_url="pubsub://acme", pubsub_create=True)
    )
    assert isinstance(container.publisher(), PubSubPublisher)
    assert isinstance(container.consumer(), PubSubConsumer)
