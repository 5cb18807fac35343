"""Consuming the subscriptions of a worker's queues by streaming pull, with the client
library's flow control and lease management; messages are handled on the event loop."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.message import Message

from adapters.brokers.pubsub.options import PubSubOptions
from adapters.brokers.pubsub.publisher import (
    MESSAGE_ID_ATTRIBUTE,
    PubSubPublisher,
    dead_letter_attributes,
)
from adapters.brokers.pubsub.topology import RPC_TIMEOUT_SECONDS, call, describe, made
from application.errors import BrokerUnavailable
from application.ports.consumer import (
    FAILED_DELIVERY_DELAY,
    DeliveryCallback,
    queue_prefetch,
)
from domain.values import DEFAULT_QUEUE, consumed_problem

logger = logging.getLogger("taskport.pubsub")

MAX_NACK_SECONDS = 600  # Pub/Sub's longest ack deadline
# The client extends the lease of a message being handled up to this long: longer than the
# longest task timeout (one day), so a long task is never delivered twice for lack of a lease.
MAX_LEASE_SECONDS = 86400 + 3600
STREAM_RETRY_SECONDS = (0.5, 30.0)
COUNTED_IDS = 10_000


class _Source:
    """One opening of a subscription's streaming pull. A message it delivered is settled
    through the stream while the stream is open (batched, and out of lease management), by
    unary calls on the subscription once it is closed."""

    def __init__(self, subscription: str) -> None:
        self.subscription = subscription
        self.open = True


Receiver = Callable[[_Source, Message], None]


class PubSubDelivery:
    """One message from a subscription. ``delivery_count`` is Pub/Sub's delivery attempt
    when the subscription has a dead-letter policy (as provisioned); without one Pub/Sub
    does not count, and the count is this process's own (1 + deliveries it saw before)."""

    def __init__(
        self, consumer: PubSubConsumer, source: _Source, message: Message, delivery_count: int
    ) -> None:
        self._consumer = consumer
        self._source = source
        self._message = message
        self.message_id = message.attributes.get(MESSAGE_ID_ATTRIBUTE) or message.message_id
        self.body: bytes = message.data
        self.delivery_count = delivery_count
        self.settled = False

    async def ack(self) -> None:
        self._settle()
        await self._consumer.acknowledge(self._source, self._message)

    async def nack(self, delay: timedelta) -> None:
        """Sets the ack deadline to ``delay`` (whole seconds, 0..600): Pub/Sub delivers the
        message again once it passes, after the subscription's retry backoff."""
        self._settle()
        seconds = min(max(math.ceil(delay.total_seconds()), 0), MAX_NACK_SECONDS)
        await self._consumer.modify_deadline(self._source, self._message, seconds)

    async def reject(self, reason: str) -> None:
        """Publishes a copy to the dead-letter topic (with the reason), then acks; if the
        copy cannot be published, hands the message back to Pub/Sub and raises
        ``BrokerUnavailable``."""
        self._settle()
        message = self._message
        attributes = dead_letter_attributes(
            message.attributes,
            message.message_id,
            self._source.subscription,
            message.delivery_attempt,
        )
        try:
            await self._consumer.dead_letters.put(self.body, attributes, reason)
        except BrokerUnavailable:
            # Not on the dead-letter topic: back to Pub/Sub rather than leased for a day.
            with contextlib.suppress(BrokerUnavailable):
                await self._consumer.modify_deadline(self._source, self._message, 0)
            raise
        await self._consumer.acknowledge(self._source, self._message)

    def _settle(self) -> None:
        if self.settled:
            raise RuntimeError(f"delivery of message {self.message_id} was already settled")
        self.settled = True


class PubSubConsumer:
    """Streaming pull from the subscription of each of ``queues`` (all of
    ``options.queues`` when not given; another is a ``ValueError``), with at most
    ``prefetch`` messages outstanding on each (the client's flow control). ``stop`` closes
    the streams at once, waits for the deliveries being handled, and returns; whatever is
    left unsettled is nacked for immediate redelivery (or, if this process dies,
    redelivered when its deadline passes)."""

    def __init__(self, options: PubSubOptions, queues: Sequence[str] | None = None) -> None:
        consumed = options.queues if queues is None else tuple(dict.fromkeys(queues))
        if problem := consumed_problem(consumed, options.queues):
            raise ValueError(problem)
        self._options = options
        self._queue_of = {options.subscription_path_for(queue): queue for queue in consumed}
        """Each consumed queue by its subscription's path."""
        self._client: pubsub_v1.SubscriberClient | None = None
        self.dead_letters = PubSubPublisher(options)
        self._stopping = asyncio.Event()
        self._consuming: asyncio.Task[None] | None = None
        self._counts: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._returning: set[asyncio.Task[None]] = set()

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The paths of the subscriptions consumed."""
        return tuple(self._queue_of)

    @classmethod
    def from_url(
        cls,
        url: str,
        create: bool = False,
        events: bool = False,
        queues: Iterable[str] = (DEFAULT_QUEUE,),
        consumed: Sequence[str] | None = None,
    ) -> PubSubConsumer:
        """A consumer of ``consumed`` (all of ``queues`` when not given), the deployment's
        queues being ``queues``."""
        return cls(PubSubOptions.from_url(url, create, events, queues), consumed)

    def _subscriber(self) -> pubsub_v1.SubscriberClient:
        if self._client is None:
            self._client = made(pubsub_v1.SubscriberClient)
        return self._client

    async def consume(
        self, callback: DeliveryCallback, prefetch: int, limits: Mapping[str, int] | None = None
    ) -> None:
        if self._consuming is not None:
            raise RuntimeError("a Pub/Sub consumer runs one stream at a time")
        self._consuming = asyncio.current_task()
        self._stopping.clear()
        loop = asyncio.get_running_loop()
        running: dict[asyncio.Task[None], PubSubDelivery] = {}
        accepting = True

        def start(source: _Source, message: Message) -> None:
            if not accepting:  # arrived as the streams closed: straight back to Pub/Sub
                returning = loop.create_task(self.modify_deadline(source, message, 0))
                self._returning.add(returning)
                returning.add_done_callback(self._returning.discard)
                return
            delivery = PubSubDelivery(self, source, message, self._count(message))
            handling = loop.create_task(self._handle(callback, delivery))
            running[handling] = delivery
            handling.add_done_callback(lambda done: running.pop(done, None))

        def on_message(source: _Source, message: Message) -> None:  # on a client's thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: redelivered later
                loop.call_soon_threadsafe(start, source, message)

        try:
            await self._provisioned()
            await self._streams(on_message, prefetch, limits)
            accepting = False
            if running:
                await asyncio.wait(running)
        finally:
            accepting = False
            deliveries = list(running.values())
            for handling in running:
                handling.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for delivery in deliveries:
                if not delivery.settled:  # handed back for immediate redelivery
                    delivery.settled = True
                    with contextlib.suppress(Exception):
                        await self.modify_deadline(delivery._source, delivery._message, 0)
            self._consuming = None

    async def _provisioned(self) -> None:
        """Provisions (when asked to) before the first stream; waits, with backoff, for a
        Pub/Sub that cannot be reached yet."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.dead_letters._ready()
                return
            except BrokerUnavailable as exc:
                failures += 1
                backoff = min(STREAM_RETRY_SECONDS[0] * 2**failures, STREAM_RETRY_SECONDS[1])
                logger.warning("Pub/Sub unavailable: %s; again in %.1fs", exc.reason, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)

    async def _streams(
        self, on_message: Receiver, prefetch: int, limits: Mapping[str, int] | None
    ) -> None:
        """Keeps a streaming pull open on each subscription until ``stop``, with the
        queue's limit as its flow control; the first failure of one closes the others and
        is raised."""
        streams = [
            asyncio.create_task(
                self._stream(subscription, on_message, queue_prefetch(queue, prefetch, limits))
            )
            for subscription, queue in self._queue_of.items()
        ]
        try:
            done, _ = await asyncio.wait(streams, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for stream in streams:
                stream.cancel()
            await asyncio.wait(streams)
        for stream in done:
            stream.result()

    async def _stream(self, subscription: str, on_message: Receiver, prefetch: int) -> None:
        """Keeps a streaming pull of ``subscription`` open until ``stop``; opens it again if
        it fails."""
        failures = 0
        flow_control = pubsub_v1.types.FlowControl(
            max_messages=prefetch, max_lease_duration=MAX_LEASE_SECONDS
        )
        while not self._stopping.is_set():
            source = _Source(subscription)
            stream = self._subscriber().subscribe(
                subscription,
                functools.partial(on_message, source),
                flow_control=flow_control,
                await_callbacks_on_shutdown=False,
            )
            ended = asyncio.wrap_future(stream)
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({ended, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                source.open = False
                await asyncio.shield(asyncio.to_thread(_close, stream))
            if ended.done() and not self._stopping.is_set():
                failures += 1
                error = ended.exception() if not ended.cancelled() else None
                backoff = min(STREAM_RETRY_SECONDS[0] * 2**failures, STREAM_RETRY_SECONDS[1])
                logger.warning(
                    "Pub/Sub stream of %s ended (%s); opening it again in %.1fs",
                    subscription,
                    describe(error) if error else "closed",
                    backoff,
                )
                await asyncio.sleep(backoff)

    async def _handle(self, callback: DeliveryCallback, delivery: PubSubDelivery) -> None:
        try:
            await callback(delivery)
        except BrokerUnavailable as exc:
            logger.warning("message %s left for redelivery: %s", delivery.message_id, exc)
        except Exception:
            logger.exception("delivery of message %s failed", delivery.message_id)
            if not delivery.settled:
                with contextlib.suppress(BrokerUnavailable):
                    await delivery.nack(FAILED_DELIVERY_DELAY)
        if not delivery.settled:
            delivery.settled = True
            await self.modify_deadline(delivery._source, delivery._message, 0)

    def _count(self, message: Message) -> int:
        if message.delivery_attempt:
            return int(message.delivery_attempt)
        seen = self._counts.pop(message.message_id, 0) + 1
        self._counts[message.message_id] = seen
        while len(self._counts) > COUNTED_IDS:
            self._counts.popitem(last=False)
        return seen

    async def acknowledge(self, source: _Source, message: Message) -> None:
        if source.open:
            message.ack()  # batched by the client, and the lease released
            return
        client = self._subscriber()
        await call(
            lambda: client.acknowledge(
                subscription=source.subscription,
                ack_ids=[message.ack_id],
                timeout=RPC_TIMEOUT_SECONDS,
            ),
            "acknowledge",
        )

    async def modify_deadline(self, source: _Source, message: Message, seconds: int) -> None:
        if source.open:
            message.modify_ack_deadline(seconds)
            message.drop()  # out of lease management, so the new deadline holds
            return
        client = self._subscriber()
        await call(
            lambda: client.modify_ack_deadline(
                subscription=source.subscription,
                ack_ids=[message.ack_id],
                ack_deadline_seconds=seconds,
                timeout=RPC_TIMEOUT_SECONDS,
            ),
            "modify ack deadline",
        )

    async def stop(self) -> None:
        self._stopping.set()
        consuming = self._consuming
        if consuming is not None and consuming is not asyncio.current_task():
            # However consuming ends; a cancellation of this wait (the caller's grace period
            # is over) goes through to the caller, and consuming goes on.
            await asyncio.wait({consuming})

    async def check(self) -> None:
        """Pub/Sub answers, and every subscription consumed exists."""
        client = self._subscriber()
        await self.dead_letters._ready()
        for subscription in self._queue_of:
            await call(
                functools.partial(
                    client.get_subscription,
                    subscription=subscription,
                    timeout=RPC_TIMEOUT_SECONDS,
                    retry=None,
                ),
                f"subscription {subscription}",
            )

    async def close(self) -> None:
        await self.dead_letters.close()
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)


def _close(stream: Any) -> None:
    stream.cancel()
    with contextlib.suppress(Exception):
        stream.result(timeout=RPC_TIMEOUT_SECONDS)
