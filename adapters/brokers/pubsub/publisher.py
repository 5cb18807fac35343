"""Publishing outbox messages to a Pub/Sub topic, batched by the client library; and
poison messages to the dead-letter topic."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from concurrent import futures

from google.api_core import exceptions as google_errors
from google.api_core import retry
from google.cloud import pubsub_v1

from adapters.brokers.confirms import naming_the_published
from adapters.brokers.pubsub.options import PubSubOptions
from adapters.brokers.pubsub.topology import (
    RPC_TIMEOUT_SECONDS,
    Provisioner,
    call,
    describe,
    made,
)
from application.errors import BrokerUnavailable
from application.messages import EVENTS_TOPIC, TaskEventMessage, queue_of
from application.ports.outbox import OutboxMessage
from domain.values import DEFAULT_QUEUE

# The attribute carrying the outbox id; Pub/Sub assigns its own message ids.
MESSAGE_ID_ATTRIBUTE = "taskport_message_id"
# The attribute carrying why a message was put on the dead-letter topic.
REASON_ATTRIBUTE = "taskport_dead_letter_reason"
# Added to a dead-lettered copy, next to the original attributes: where it came from.
SOURCE_MESSAGE_ID_ATTRIBUTE = "taskport_source_message_id"
SOURCE_SUBSCRIPTION_ATTRIBUTE = "taskport_source_subscription"
DELIVERY_ATTEMPT_ATTRIBUTE = "taskport_delivery_attempt"
# How long ``publish`` waits for Pub/Sub to take a batch; the outbox relay retries later.
PUBLISH_TIMEOUT_SECONDS = 10.0
# Retried by the client library within the publish timeout (its default retries for 10 min).
TRANSIENT_ERRORS = (
    google_errors.Aborted,
    google_errors.Cancelled,
    google_errors.DeadlineExceeded,
    google_errors.InternalServerError,
    google_errors.ResourceExhausted,
    google_errors.ServiceUnavailable,
    google_errors.Unknown,
)
BATCH = pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.005)


def dead_letter_attributes(
    attributes: Mapping[str, str],
    message_id: str,
    subscription: str,
    delivery_attempt: int | None,
) -> dict[str, str]:
    """The attributes of a dead-lettered copy, pulled or pushed alike: the original ones,
    the message's id and subscription, and Pub/Sub's delivery attempt when it counts them
    (a subscription with a dead-letter policy)."""
    copied = {
        **attributes,
        SOURCE_MESSAGE_ID_ATTRIBUTE: message_id,
        SOURCE_SUBSCRIPTION_ATTRIBUTE: subscription,
    }
    if delivery_attempt is not None:
        copied[DELIVERY_ATTEMPT_ATTRIBUTE] = str(delivery_attempt)
    return copied


class PubSubPublisher:
    """Publishes run messages to their queue's topic, and task events to the events topic
    (a run message of a queue not in ``options.queues`` is a ``ValueError``, as is a message
    of a topic this broker does not carry); ``publish`` hands the whole batch to the client,
    then waits (without blocking the event loop) until every message's future resolved
    (``PartlyPublished`` names the messages Pub/Sub took when it did not take all, as while
    the events topic is missing). Also the ``DeadLetters`` of Pub/Sub: ``put`` publishes to
    the dead-letter topic."""

    name = "broker"

    def __init__(
        self, options: PubSubOptions, publish_timeout: float = PUBLISH_TIMEOUT_SECONDS
    ) -> None:
        self._options = options
        self._timeout = publish_timeout
        self._client: pubsub_v1.PublisherClient | None = None
        self._provisioner = Provisioner(options)
        self._in_flight: set[futures.Future[str]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        create: bool = False,
        events: bool = False,
        queues: Iterable[str] = (DEFAULT_QUEUE,),
    ) -> PubSubPublisher:
        return cls(PubSubOptions.from_url(url, create, events, queues))

    def _publisher(self) -> pubsub_v1.PublisherClient:
        if self._client is None:
            options = pubsub_v1.types.PublisherOptions(
                retry=retry.Retry(
                    predicate=retry.if_exception_type(*TRANSIENT_ERRORS),
                    initial=0.1,
                    maximum=2.0,
                    timeout=self._timeout,
                ),
                timeout=self._timeout,
            )
            self._client = made(
                lambda: pubsub_v1.PublisherClient(batch_settings=BATCH, publisher_options=options)
            )
        return self._client

    async def _ready(self) -> pubsub_v1.PublisherClient:
        client = self._publisher()
        if not self._provisioner.done:
            with made(pubsub_v1.SubscriberClient) as subscriber:
                await self._provisioner.ensure(client, subscriber)
        return client

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        routed = [self._route(message) for message in messages]
        if not routed:
            return
        client = await self._ready()
        try:
            pending = [
                self._track(client.publish(topic, message.body, **attributes))
                for message, (topic, attributes) in zip(messages, routed, strict=True)
            ]
        except (google_errors.GoogleAPIError, RuntimeError) as exc:
            raise BrokerUnavailable(f"cannot publish: {describe(exc)}") from exc
        try:
            await all_published(pending, self._timeout)
        except BrokerUnavailable as exc:
            raise naming_the_published(exc, messages, pending) from exc

    def _route(self, message: OutboxMessage) -> tuple[str, dict[str, str]]:
        """The topic and attributes of ``message``: a run message goes to its queue's topic,
        a task event to the events topic with its ``type``, ``kind`` and ``task_id`` (for
        subscriptions' filters)."""
        attributes = {MESSAGE_ID_ATTRIBUTE: str(message.id)}
        queue = queue_of(message.topic)
        if queue is not None:
            if queue not in self._options.queues:
                raise ValueError(
                    f"queue {queue!r} (topic {message.topic!r}) is not one of this "
                    f"deployment's queues: {', '.join(self._options.queues)}"
                )
            return self._options.topic_path_for(queue), attributes
        if message.topic == EVENTS_TOPIC:
            event = TaskEventMessage.decode(message.body)
            attributes.update(type=event.type, kind=event.kind, task_id=str(event.task_id))
            return self._options.events_topic_path, attributes
        raise ValueError(f"this broker carries no topic {message.topic!r}")

    def _track(self, published: futures.Future[str]) -> asyncio.Future[str]:
        """The publish future as an awaitable; ``close`` waits for the ones still open."""
        self._in_flight.add(published)
        published.add_done_callback(self._in_flight.discard)
        return asyncio.wrap_future(published)

    async def put(self, body: bytes, attributes: Mapping[str, str], reason: str) -> None:
        """Publishes one message to the dead-letter topic, with ``attributes`` and the reason
        in ``REASON_ATTRIBUTE`` (``DeadLetters``); ``BrokerUnavailable`` if Pub/Sub did not
        take it."""
        client = await self._ready()
        try:
            published = client.publish(
                self._options.dead_letter_topic_path,
                body,
                **{**attributes, REASON_ATTRIBUTE: reason[:1000]},
            )
        except (google_errors.GoogleAPIError, RuntimeError) as exc:
            raise BrokerUnavailable(f"cannot dead-letter: {describe(exc)}") from exc
        await all_published([self._track(published)], self._timeout)

    async def check(self) -> None:
        """The topic of every queue exists, and the events topic when events are on:
        otherwise every publish of their messages would fail until someone created it."""
        client = await self._ready()
        topics = [self._options.topic_path_for(queue) for queue in self._options.queues]
        if self._options.events:
            topics.append(self._options.events_topic_path)
        for topic in topics:
            await call(
                lambda topic=topic: client.get_topic(
                    topic=topic, timeout=RPC_TIMEOUT_SECONDS, retry=None
                ),
                f"topic {topic}",
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.stop)  # sends what is batched, without waiting
            if self._in_flight:
                # each ends within the client's retry timeout, failed if not published
                await asyncio.to_thread(futures.wait, set(self._in_flight), self._timeout + 5)
            await asyncio.to_thread(client.transport.close)


async def all_published(pending: Sequence[asyncio.Future[str]], within: float) -> None:
    """Waits for every publish future; ``BrokerUnavailable`` if any failed or they take
    longer than ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            results = await asyncio.gather(*pending, return_exceptions=True)
    except TimeoutError:
        for future in pending:
            future.cancel()
        raise BrokerUnavailable(f"Pub/Sub took no message within {within:g} seconds") from None
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        raise BrokerUnavailable(
            f"{len(failures)} of {len(results)} messages not published: {describe(failures[0])}"
        )
