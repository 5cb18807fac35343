"""Consuming task queues from RabbitMQ, with delayed redelivery through TTL queues."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import reprlib
import time
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pika.channel import Channel
from pika.spec import PERSISTENT_DELIVERY_MODE, Basic, BasicProperties

from adapters.brokers.rabbitmq.connector import Connector
from adapters.brokers.rabbitmq.options import RabbitMqOptions, Topology
from adapters.brokers.rabbitmq.session import (
    AmqpSession,
    MessageCallback,
    UndecodableHeaders,
    all_confirmed,
)
from application.errors import BrokerUnavailable
from application.ports.consumer import (
    FAILED_DELIVERY_DELAY,
    DeliveryCallback,
    queue_prefetch,
)
from domain.values import DEFAULT_QUEUE, consumed_problem

logger = logging.getLogger("taskport.rabbitmq")

CHECK_WAIT_SECONDS = 1.0
# Deliveries before a republish: classic queues count nothing, quorum queues restart at 0.
DELIVERIES_HEADER = "x-taskport-deliveries"
# Not to be handled before this time (epoch ms): set when a delay exceeds the longest tier.
DUE_HEADER = "x-taskport-due-ms"
REASON_HEADER = "x-taskport-dead-letter-reason"
QUORUM_COUNT_HEADER = "x-delivery-count"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The times a datetime holds, in epoch ms: a due time outside them is no time at all.
DUE_MS_RANGE = tuple(
    (instant.replace(tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
    for instant in (datetime.min, datetime.max)
)


class UnreadableHeader(Exception):
    """A header the consumer reads holds something other than what Taskport (or RabbitMQ)
    puts there: whoever published the message put it there."""


class RabbitMqDelivery:
    """A message taken from the task queue of ``queue`` on one channel; settled on that same
    channel, and delayed or put back on that queue's own queues."""

    def __init__(
        self,
        session: AmqpSession,
        topology: Topology,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
        queue: str = DEFAULT_QUEUE,
    ) -> None:
        self._session = session
        self._topology = topology
        self._queue = queue
        self._tag: int = method.delivery_tag
        session.delivered(self._tag)
        self.settled = False
        self.message_id = _text(properties.message_id)
        self.body = body
        self.unreadable: str | None = None
        """Why the headers make the message one that can never be processed, if they do."""
        headers = properties.headers or {}
        try:
            if isinstance(properties.headers, UndecodableHeaders):
                raise UnreadableHeader(f"headers cannot be read: {properties.headers.reason}")
            self._earlier = _count(headers, DELIVERIES_HEADER)
            returns = _count(headers, QUORUM_COUNT_HEADER)
            self._due_ms = _due_ms(headers)
        except UnreadableHeader as exc:
            self.unreadable = str(exc)
            self._earlier, returns, self._due_ms = None, None, None
        earlier = self._earlier or 0
        if returns is not None:  # quorum queues count the returns of this copy
            self.delivery_count = earlier + returns + 1
        else:  # a classic queue only flags a redelivery; it does not count how many
            self.delivery_count = earlier + (2 if method.redelivered else 1)
        self.uncounted = method.redelivered and returns is None

    @property
    def due_in(self) -> timedelta:
        if self._due_ms is None:
            return timedelta(0)
        return timedelta(milliseconds=self._due_ms - _now_ms())

    async def ack(self) -> None:
        self._settle()
        self._session.settle(self._tag)

    async def nack(self, delay: timedelta) -> None:
        self._settle()
        headers = {DELIVERIES_HEADER: self.delivery_count}
        if delay > self._topology.tier_for(delay):
            headers[DUE_HEADER] = _now_ms() + int(delay.total_seconds() * 1000)
        await self._move(self._delay_queue(delay), headers)

    async def reject(self, reason: str) -> None:
        self._settle()
        await self._move(
            self._topology.dead_letter_queue,
            {DELIVERIES_HEADER: self.delivery_count, REASON_HEADER: reason},
        )

    async def recount(self) -> None:
        """Puts an uncounted redelivery back on the task queue with the deliveries so far
        in a header, so that the next delivery shows the right count."""
        self._settle()
        headers = {**self._own_headers(), DELIVERIES_HEADER: self.delivery_count - 1}
        await self._move(self._topology.task_queue(self._queue), headers)

    async def postpone(self) -> None:
        """Sends a message that is not due yet back to wait, without counting a delivery."""
        self._settle()
        await self._move(self._delay_queue(self.due_in), self._own_headers())

    def _own_headers(self) -> dict[str, Any]:
        """Taskport's headers of this copy, as read; RabbitMQ's own (x-death,
        x-delivery-count) belong to the copy they came on."""
        own: dict[str, Any] = {}
        if self._earlier is not None:
            own[DELIVERIES_HEADER] = self._earlier
        if self._due_ms is not None:
            own[DUE_HEADER] = self._due_ms
        return own

    def _delay_queue(self, delay: timedelta) -> str:
        if delay <= timedelta(0):
            return self._topology.task_queue(self._queue)
        return self._topology.delay_queue(self._topology.tier_for(delay), self._queue)

    async def _move(self, queue: str, headers: dict[str, Any]) -> None:
        """Publishes a copy to ``queue`` and, once confirmed, acks this delivery; if the copy
        is not confirmed, the delivery goes back to the task queue instead."""
        properties = BasicProperties(
            message_id=self.message_id,
            delivery_mode=PERSISTENT_DELIVERY_MODE,
            content_type="application/json",
            headers=headers,
        )
        try:
            await all_confirmed([self._session.publish(queue, self.body, properties)])
        except BrokerUnavailable:
            with contextlib.suppress(BrokerUnavailable):
                self._session.settle(self._tag, ack=False)
            raise
        self._session.settle(self._tag)

    def _settle(self) -> None:
        if self.settled:
            raise RuntimeError(f"delivery of message {self.message_id} was already settled")
        self.settled = True


class RabbitMqConsumer:
    """Consumes the task queues of ``queues`` (all of the deployment's by default), each
    with ``basic.qos`` prefetch (RabbitMQ applies it per consumer: quorum queues have no
    prefetch shared by a channel's consumers), one asyncio task per delivery; resumes by
    itself on a new connection when the connection is lost."""

    name = "broker"

    def __init__(self, options: RabbitMqOptions, queues: Sequence[str] | None = None) -> None:
        self._topology = options.topology
        self._queues = tuple(queues) if queues is not None else options.topology.queues
        if problem := consumed_problem(self._queues, options.topology.queues):
            raise ValueError(problem)
        self._connector = Connector(options, "consumer")
        self._stopping = asyncio.Event()
        self._consuming: asyncio.Task[None] | None = None
        self._handling: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        consumed: Sequence[str] | None = None,
    ) -> RabbitMqConsumer:
        """``queues``: the deployment's; ``consumed``: those this consumer takes (all)."""
        return cls(RabbitMqOptions.from_url(url, queues), consumed)

    async def consume(
        self, callback: DeliveryCallback, prefetch: int, limits: Mapping[str, int] | None = None
    ) -> None:
        if self._consuming is not None:
            raise RuntimeError("this consumer is already consuming")
        self._consuming = asyncio.current_task()
        self._stopping.clear()
        try:
            while (session := await self._next_session()) is not None:
                try:
                    await self._consume_on(session, callback, prefetch, limits)
                except BrokerUnavailable as exc:
                    logger.warning("consuming interrupted: %s", exc)
            if self._handling:
                await asyncio.wait(self._handling)
        finally:
            for handling in self._handling:
                handling.cancel()
            await asyncio.gather(*self._handling, return_exceptions=True)
            await self._connector.close()
            self._consuming = None

    async def _next_session(self) -> AmqpSession | None:
        """The next open session, or ``None`` once stopping."""
        connecting = asyncio.ensure_future(self._connector.session(wait=None))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connecting.cancel()
            stopping.cancel()
        if self._stopping.is_set() or connecting.cancelled():
            return None
        return connecting.result()

    async def _consume_on(
        self,
        session: AmqpSession,
        callback: DeliveryCallback,
        prefetch: int,
        limits: Mapping[str, int] | None,
    ) -> None:
        def receiver(queue: str) -> MessageCallback:
            def on_message(
                _: Channel, method: Basic.Deliver, properties: BasicProperties, body: bytes
            ) -> None:
                delivery = RabbitMqDelivery(
                    session, self._topology, method, properties, body, queue
                )
                self._start(self._handle(callback, delivery))

            return on_message

        consumer_tags = []
        for queue in self._queues:
            # basic.qos sets the prefetch of the consumers the channel starts after it.
            await session.qos(queue_prefetch(queue, prefetch, limits))
            task_queue = self._topology.task_queue(queue)
            consumer_tags.append(await session.consume(task_queue, receiver(queue)))
        stopping = asyncio.ensure_future(self._stopping.wait())
        ends: set[asyncio.Future[Any]] = {stopping, session.lost}
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        for consumer_tag in consumer_tags:
            if session.is_open:
                await session.cancel(consumer_tag)

    def _start(self, handling: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(handling)
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)

    @staticmethod
    async def _handle(callback: DeliveryCallback, delivery: RabbitMqDelivery) -> None:
        try:
            if delivery.unreadable is not None:
                named = delivery.message_id or "without an id"
                logger.error("dead-lettering message %s: %s", named, delivery.unreadable)
                await delivery.reject(delivery.unreadable)
            elif delivery.due_in > timedelta(0):
                await delivery.postpone()
            elif delivery.uncounted:
                await delivery.recount()
            else:
                await callback(delivery)
        except BrokerUnavailable as exc:
            logger.warning("message %s left for redelivery: %s", delivery.message_id, exc)
        except Exception:
            logger.exception("delivery of message %s failed", delivery.message_id)
            if not delivery.settled:
                with contextlib.suppress(BrokerUnavailable):
                    await delivery.nack(FAILED_DELIVERY_DELAY)

    async def stop(self) -> None:
        self._stopping.set()
        consuming = self._consuming
        if consuming is not None and consuming is not asyncio.current_task():
            # However consuming ends; a cancellation of this wait (the caller's grace period
            # is over) goes through to the caller, and consuming goes on.
            await asyncio.wait({consuming})

    async def check(self) -> None:
        await self._connector.session(wait=CHECK_WAIT_SECONDS)

    async def close(self) -> None:
        await self._connector.close()


def _count(headers: Mapping[str, Any], name: str) -> int | None:
    """The count in the header ``name``; ``None`` without one."""
    if name not in headers:
        return None
    count = headers[name]
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise UnreadableHeader(f"header {name} is not a count: {reprlib.repr(count)}")
    return count


def _due_ms(headers: Mapping[str, Any]) -> int | None:
    """The time in ``DUE_HEADER`` (epoch ms); ``None`` without one."""
    if DUE_HEADER not in headers:
        return None
    due = headers[DUE_HEADER]
    earliest, latest = DUE_MS_RANGE
    if not isinstance(due, int) or isinstance(due, bool) or not earliest <= due <= latest:
        raise UnreadableHeader(f"header {DUE_HEADER} is not a time: {reprlib.repr(due)}")
    return due


def _text(message_id: str | bytes | None) -> str:
    """A message id as text: pika hands over one that is not UTF-8 as bytes."""
    if isinstance(message_id, bytes):
        return message_id.decode("utf-8", "backslashreplace")
    return message_id or ""


def _now_ms() -> int:
    return int(time.time() * 1000)
