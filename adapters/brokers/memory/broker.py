"""The in-process queue: a real broker for one process, with ack, delayed nack,
redelivery of unsettled messages and a dead-letter list."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta

from attrs import define

from application.messages import EVENTS_TOPIC, queue_of
from application.ports.consumer import FAILED_DELIVERY_DELAY, DeliveryCallback, queue_prefetch
from application.ports.outbox import OutboxMessage
from domain.values import DEFAULT_QUEUE, consumed_problem

logger = logging.getLogger("taskport.memory")


@define
class _Envelope:
    message_id: str
    body: bytes
    queue: str = DEFAULT_QUEUE
    delivery_count: int = 0


@define
class DeadLetter:
    message_id: str
    body: bytes
    reason: str


class MemoryDelivery:
    def __init__(self, broker: MemoryBroker, envelope: _Envelope) -> None:
        self._broker = broker
        self._envelope = envelope
        self.message_id = envelope.message_id
        self.body = envelope.body
        self.delivery_count = envelope.delivery_count
        self.settled = False

    async def ack(self) -> None:
        self._settle()

    async def nack(self, delay: timedelta) -> None:
        self._settle()
        self._broker.enqueue_later(self._envelope, delay)

    async def reject(self, reason: str) -> None:
        self._settle()
        self._broker.dead_letters.append(
            DeadLetter(self._envelope.message_id, self._envelope.body, reason)
        )

    def _settle(self) -> None:
        if self.settled:
            raise RuntimeError(f"delivery of message {self.message_id} was already settled")
        self.settled = True


class MemoryBroker:
    """Publisher and consumer of the run messages of ``queues`` within this process; its
    consumer takes those of ``consumed`` (all by default), and the others wait here for
    none. Task events, which only other systems would hear, are dropped
    (``TASKPORT_PUBLISH_EVENTS`` refuses this broker; a deployment that had another one may
    leave some in its outbox)."""

    name = "broker"

    def __init__(
        self,
        queues: tuple[str, ...] = (DEFAULT_QUEUE,),
        consumed: tuple[str, ...] | None = None,
    ) -> None:
        self._queues = queues
        self._consumed = queues
        self.consume_only(consumed if consumed is not None else queues)
        self._ready: dict[str, collections.deque[_Envelope]] = {
            queue: collections.deque() for queue in queues
        }
        self._arrived = asyncio.Event()
        self._stopping = asyncio.Event()
        self._timers: set[asyncio.TimerHandle] = set()
        self._consuming: asyncio.Task[None] | None = None
        self._limits: Mapping[str, int] = {}
        """The most deliveries of each queue unsettled at once, while consuming."""
        self._in_hand: collections.Counter[str] = collections.Counter()
        """Deliveries of each queue unsettled."""
        self.dead_letters: list[DeadLetter] = []

    def consume_only(self, queues: tuple[str, ...]) -> None:
        """The next ``consume`` takes the messages of ``queues`` only."""
        if problem := consumed_problem(queues, self._queues):
            raise ValueError(problem)
        self._consumed = queues

    @property
    def ready_count(self) -> int:
        return sum(len(ready) for ready in self._ready.values())

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        for message in messages:
            if message.topic == EVENTS_TOPIC:
                continue  # no other system can subscribe within this process
            queue = queue_of(message.topic)
            if queue not in self._ready:
                raise ValueError(f"this broker carries no topic {message.topic!r}")
            self.enqueue(_Envelope(str(message.id), message.body, queue))

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def enqueue(self, envelope: _Envelope) -> None:
        self._ready[envelope.queue].append(envelope)
        if envelope.queue in self._consumed:
            self._arrived.set()

    def enqueue_later(self, envelope: _Envelope, delay: timedelta) -> None:
        seconds = delay.total_seconds()
        if seconds <= 0:
            self.enqueue(envelope)
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            self.enqueue(envelope)

        timer = loop.call_later(seconds, fire)
        self._timers.add(timer)

    async def consume(
        self, callback: DeliveryCallback, prefetch: int, limits: Mapping[str, int] | None = None
    ) -> None:
        """At most ``prefetch`` deliveries at once in all (one process's queues share one
        worker), and ``limits[queue]`` of a queue named there."""
        if self._consuming is not None:
            raise RuntimeError("the in-process queue has one consumer at a time")
        self._consuming = asyncio.current_task()
        self._stopping.clear()
        self._limits = {queue: queue_prefetch(queue, prefetch, limits) for queue in self._queues}
        self._in_hand.clear()
        slots = asyncio.Semaphore(prefetch)
        running: dict[asyncio.Task[None], MemoryDelivery] = {}

        def settled(handling: asyncio.Task[None]) -> None:
            self._in_hand[running.pop(handling)._envelope.queue] -= 1
            slots.release()
            self._arrived.set()  # a queue at its limit may take a message again

        try:
            while True:
                await slots.acquire()
                envelope = None if self._stopping.is_set() else await self._next()
                if envelope is None:
                    slots.release()
                    break
                envelope.delivery_count += 1
                self._in_hand[envelope.queue] += 1
                delivery = MemoryDelivery(self, envelope)
                handling = asyncio.create_task(_handle(callback, delivery))
                running[handling] = delivery
                handling.add_done_callback(settled)
            if running:
                await asyncio.wait(running)
        finally:
            # Cancelled (the grace period is over): the callbacks see their cancellation
            # through (a worker hands its tasks back) before this returns.
            deliveries = list(running.values())
            for handling in running:
                handling.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for delivery in deliveries:
                if not delivery.settled:
                    self.enqueue(delivery._envelope)
            self._consuming = None

    async def _next(self) -> _Envelope | None:
        while not (ready := self._next_ready()):
            self._arrived.clear()
            arrived = asyncio.ensure_future(self._arrived.wait())
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({arrived, stopping}, return_when=asyncio.FIRST_COMPLETED)
            arrived.cancel()
            stopping.cancel()
            if self._stopping.is_set():
                return None
        return ready.popleft()

    def _next_ready(self) -> collections.deque[_Envelope] | None:
        """The next consumed queue holding a message, below its limit; the queues take
        turns (the one returned goes last), so a busy queue does not hold the others back."""
        for index, queue in enumerate(self._consumed):
            if self._ready[queue] and self._in_hand[queue] < self._limits[queue]:
                self._consumed = (*self._consumed[index + 1 :], *self._consumed[: index + 1])
                return self._ready[queue]
        return None

    async def stop(self) -> None:
        self._stopping.set()
        consuming = self._consuming
        if consuming is not None and consuming is not asyncio.current_task():
            # However consuming ends; a cancellation of this wait (the caller's grace period
            # is over) goes through to the caller, and consuming goes on.
            await asyncio.wait({consuming})


async def _handle(callback: DeliveryCallback, delivery: MemoryDelivery) -> None:
    try:
        await callback(delivery)
    except Exception:
        logger.exception("delivery of message %s failed", delivery.message_id)
        if not delivery.settled:
            await delivery.nack(FAILED_DELIVERY_DELAY)
