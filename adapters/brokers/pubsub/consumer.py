"""Consuming the task subscription by streaming pull, with the client library's flow
control and lease management; messages are handled on the event loop."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
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
from application.ports.consumer import FAILED_DELIVERY_DELAY, DeliveryCallback

logger = logging.getLogger("taskport.pubsub")

MAX_NACK_SECONDS = 600  # Pub/Sub's longest ack deadline
# The client extends the lease of a message being handled up to this long: longer than the
# longest task timeout (one day), so a long task is never delivered twice for lack of a lease.
MAX_LEASE_SECONDS = 86400 + 3600
STREAM_RETRY_SECONDS = (0.5, 30.0)
COUNTED_IDS = 10_000


class PubSubDelivery:
    """One message from the subscription. ``delivery_count`` is Pub/Sub's delivery attempt
    when the subscription has a dead-letter policy (as provisioned); without one Pub/Sub
    does not count, and the count is this process's own (1 + deliveries it saw before)."""

    def __init__(self, consumer: PubSubConsumer, message: Message, delivery_count: int) -> None:
        self._consumer = consumer
        self._message = message
        self.message_id = message.attributes.get(MESSAGE_ID_ATTRIBUTE) or message.message_id
        self.body: bytes = message.data
        self.delivery_count = delivery_count
        self.settled = False

    async def ack(self) -> None:
        self._settle()
        await self._consumer.acknowledge(self._message)

    async def nack(self, delay: timedelta) -> None:
        """Sets the ack deadline to ``delay`` (whole seconds, 0..600): Pub/Sub delivers the
        message again once it passes, after the subscription's retry backoff."""
        self._settle()
        seconds = min(max(math.ceil(delay.total_seconds()), 0), MAX_NACK_SECONDS)
        await self._consumer.modify_deadline(self._message, seconds)

    async def reject(self, reason: str) -> None:
        """Publishes a copy to the dead-letter topic (with the reason), then acks; if the
        copy cannot be published, hands the message back to Pub/Sub and raises
        ``BrokerUnavailable``."""
        self._settle()
        message = self._message
        attributes = dead_letter_attributes(
            message.attributes,
            message.message_id,
            self._consumer.subscription,
            message.delivery_attempt,
        )
        try:
            await self._consumer.dead_letters.put(self.body, attributes, reason)
        except BrokerUnavailable:
            # Not on the dead-letter topic: back to Pub/Sub rather than leased for a day.
            with contextlib.suppress(BrokerUnavailable):
                await self._consumer.modify_deadline(self._message, 0)
            raise
        await self._consumer.acknowledge(self._message)

    def _settle(self) -> None:
        if self.settled:
            raise RuntimeError(f"delivery of message {self.message_id} was already settled")
        self.settled = True


class PubSubConsumer:
    """Streaming pull from the task subscription with at most ``prefetch`` messages
    outstanding (the client's flow control). ``stop`` closes the stream at once, waits for
    the deliveries being handled, and returns; whatever is left unsettled is nacked for
    immediate redelivery (or, if this process dies, redelivered when its deadline passes)."""

    def __init__(self, options: PubSubOptions) -> None:
        self._options = options
        self._client: pubsub_v1.SubscriberClient | None = None
        self.dead_letters = PubSubPublisher(options)
        self._streaming = False
        self._stopping = asyncio.Event()
        self._consuming: asyncio.Task[None] | None = None
        self._counts: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._returning: set[asyncio.Task[None]] = set()

    @property
    def subscription(self) -> str:
        """The path of the subscription consumed."""
        return self._options.subscription_path

    @classmethod
    def from_url(cls, url: str, create: bool = False, events: bool = False) -> PubSubConsumer:
        return cls(PubSubOptions.from_url(url, create, events))

    def _subscriber(self) -> pubsub_v1.SubscriberClient:
        if self._client is None:
            self._client = made(pubsub_v1.SubscriberClient)
        return self._client

    async def consume(self, callback: DeliveryCallback, prefetch: int) -> None:
        if self._consuming is not None:
            raise RuntimeError("a Pub/Sub consumer runs one stream at a time")
        self._consuming = asyncio.current_task()
        self._stopping.clear()
        loop = asyncio.get_running_loop()
        running: dict[asyncio.Task[None], PubSubDelivery] = {}
        accepting = True

        def start(message: Message) -> None:
            if not accepting:  # arrived as the stream closed: straight back to Pub/Sub
                returning = loop.create_task(self.modify_deadline(message, 0))
                self._returning.add(returning)
                returning.add_done_callback(self._returning.discard)
                return
            delivery = PubSubDelivery(self, message, self._count(message))
            handling = loop.create_task(self._handle(callback, delivery))
            running[handling] = delivery
            handling.add_done_callback(lambda done: running.pop(done, None))

        def on_message(message: Message) -> None:  # on one of the client's threads
            with contextlib.suppress(RuntimeError):  # the loop is closed: redelivered later
                loop.call_soon_threadsafe(start, message)

        try:
            await self._provisioned()
            await self._stream(on_message, prefetch)
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
                        await self.modify_deadline(delivery._message, 0)
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

    async def _stream(self, on_message: Any, prefetch: int) -> None:
        """Keeps a streaming pull open until ``stop``; opens it again if it fails."""
        failures = 0
        flow_control = pubsub_v1.types.FlowControl(
            max_messages=prefetch, max_lease_duration=MAX_LEASE_SECONDS
        )
        while not self._stopping.is_set():
            stream = self._subscriber().subscribe(
                self._options.subscription_path,
                on_message,
                flow_control=flow_control,
                await_callbacks_on_shutdown=False,
            )
            self._streaming = True
            ended = asyncio.wrap_future(stream)
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({ended, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                self._streaming = False
                await asyncio.shield(asyncio.to_thread(_close, stream))
            if ended.done() and not self._stopping.is_set():
                failures += 1
                error = ended.exception() if not ended.cancelled() else None
                backoff = min(STREAM_RETRY_SECONDS[0] * 2**failures, STREAM_RETRY_SECONDS[1])
                logger.warning(
                    "Pub/Sub stream of %s ended (%s); opening it again in %.1fs",
                    self._options.subscription_path,
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
            await self.modify_deadline(delivery._message, 0)

    def _count(self, message: Message) -> int:
        if message.delivery_attempt:
            return int(message.delivery_attempt)
        seen = self._counts.pop(message.message_id, 0) + 1
        self._counts[message.message_id] = seen
        while len(self._counts) > COUNTED_IDS:
            self._counts.popitem(last=False)
        return seen

    async def acknowledge(self, message: Message) -> None:
        if self._streaming:
            message.ack()  # batched by the client, and the lease released
            return
        client = self._subscriber()
        await call(
            lambda: client.acknowledge(
                subscription=self._options.subscription_path,
                ack_ids=[message.ack_id],
                timeout=RPC_TIMEOUT_SECONDS,
            ),
            "acknowledge",
        )

    async def modify_deadline(self, message: Message, seconds: int) -> None:
        if self._streaming:
            message.modify_ack_deadline(seconds)
            message.drop()  # out of lease management, so the new deadline holds
            return
        client = self._subscriber()
        await call(
            lambda: client.modify_ack_deadline(
                subscription=self._options.subscription_path,
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
        client = self._subscriber()
        await self.dead_letters._ready()
        await call(
            lambda: client.get_subscription(
                subscription=self._options.subscription_path,
                timeout=RPC_TIMEOUT_SECONDS,
                retry=None,
            ),
            f"subscription {self._options.subscription_path}",
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
