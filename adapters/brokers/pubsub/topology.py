"""Creating Taskport's topics and subscriptions (``TASKPORT_PUBSUB_CREATE=true``), and
translating the client library's errors (and its credentials') at the adapter's edge."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from google.api_core import exceptions as google_errors
from google.auth import exceptions as google_auth_errors
from google.cloud import pubsub_v1
from google.pubsub_v1 import types

from adapters.brokers.pubsub.options import PubSubOptions
from application.errors import BrokerUnavailable

logger = logging.getLogger("taskport.pubsub")

T = TypeVar("T")
RPC_TIMEOUT_SECONDS = 5.0


def provision(
    options: PubSubOptions,
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
) -> None:
    """Creates the topic of every queue, the dead-letter topic and its subscription, the
    subscription of every queue with its dead-letter and retry policies, and the events
    topic when events are on; whatever exists is kept as is."""
    topics = [options.topic_path_for(queue) for queue in options.queues]
    topics.append(options.dead_letter_topic_path)
    if options.events:
        topics.append(options.events_topic_path)
    for topic in topics:
        _create(functools.partial(publisher.create_topic, name=topic, timeout=RPC_TIMEOUT_SECONDS))
    subscriptions = [
        types.Subscription(
            name=options.dead_letter_subscription_path,
            topic=options.dead_letter_topic_path,
            ack_deadline_seconds=60,
        )
    ]
    subscriptions.extend(_task_subscription(options, queue) for queue in options.queues)
    for subscription in subscriptions:
        _create(
            functools.partial(
                subscriber.create_subscription, request=subscription, timeout=RPC_TIMEOUT_SECONDS
            )
        )
    logger.info("Pub/Sub topics and subscriptions of %s are in place", options.project)


def _task_subscription(options: PubSubOptions, queue: str) -> types.Subscription:
    """The subscription of ``queue``'s topic: pushed to ``push_endpoint`` when there is one,
    dead-lettering after ``max_delivery_attempts``."""
    return types.Subscription(
        name=options.subscription_path_for(queue),
        topic=options.topic_path_for(queue),
        ack_deadline_seconds=options.ack_deadline_seconds,
        push_config=types.PushConfig(push_endpoint=options.push_endpoint or ""),
        dead_letter_policy=types.DeadLetterPolicy(
            dead_letter_topic=options.dead_letter_topic_path,
            max_delivery_attempts=options.max_delivery_attempts,
        ),
        retry_policy=types.RetryPolicy(
            minimum_backoff=timedelta(seconds=options.min_backoff_seconds),
            maximum_backoff=timedelta(seconds=options.max_backoff_seconds),
        ),
    )


def _create(create: Callable[[], object]) -> None:
    with contextlib.suppress(google_errors.AlreadyExists):
        create()


async def call(operation: Callable[[], T], what: str) -> T:
    """Runs a blocking client call in a thread; its failures become ``BrokerUnavailable``."""
    try:
        return await asyncio.to_thread(operation)
    except google_errors.NotFound as exc:
        raise BrokerUnavailable(
            f"{what}: {exc.message}; create it, or set TASKPORT_PUBSUB_CREATE=true"
        ) from exc
    except google_errors.GoogleAPIError as exc:
        raise BrokerUnavailable(f"{what}: {describe(exc)}") from exc


def made(client: Callable[[], T]) -> T:
    """A client of the library, made now; the credentials it could not find are
    ``BrokerUnavailable`` (there may be some later: a metadata server still starting)."""
    try:
        return client()
    except google_auth_errors.GoogleAuthError as exc:
        raise BrokerUnavailable(f"no credentials for Pub/Sub: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or repr(exc)
    return f"{type(exc).__name__}: {message}"[:300]


class Provisioner:
    """Provisions once per process (when asked to), on the first use of the broker."""

    def __init__(self, options: PubSubOptions) -> None:
        self._options = options
        self._done = not options.create
        self._lock = asyncio.Lock()

    @property
    def done(self) -> bool:
        return self._done

    async def ensure(
        self, publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient
    ) -> None:
        if self._done:
            return
        async with self._lock:
            if not self._done:
                await call(lambda: provision(self._options, publisher, subscriber), "provisioning")
                self._done = True
