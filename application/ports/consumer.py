from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Protocol


class Delivery(Protocol):
    """One delivery of a message to a consumer.

    Exactly one of ``ack``, ``nack`` or ``reject`` settles it; a delivery left unsettled
    when its consumer stops or dies is delivered again. ``delivery_count`` is 1 on the
    first delivery and grows with each redelivery.
    """

    message_id: str
    body: bytes
    delivery_count: int

    async def ack(self) -> None:
        """The message is done with and is never delivered again."""

    async def nack(self, delay: timedelta) -> None:
        """Deliver the message again, not before ``delay`` has passed."""

    async def reject(self, reason: str) -> None:
        """The message can never be processed: move it to the dead-letter destination."""


DeliveryCallback = Callable[[Delivery], Awaitable[None]]


def queue_prefetch(queue: str, prefetch: int, limits: Mapping[str, int] | None) -> int:
    """The most deliveries of ``queue`` a consumer holds unsettled: ``prefetch``, or the
    queue's limit when it has a lower one."""
    return min(prefetch, (limits or {}).get(queue, prefetch))


FAILED_DELIVERY_DELAY = timedelta(seconds=5)
"""How long a consumer waits before delivering again a message whose callback raised."""


class Consumer(Protocol):
    """Delivers the run messages of the queues the consumer was made for to a callback.

    ``consume`` runs until ``stop`` is called (or it is cancelled), with at most
    ``prefetch`` deliveries unsettled at once from each of its queues, and at most
    ``limits[queue]`` from a queue named there. Each delivery is awaited in its own task,
    so deliveries run concurrently up to that many per queue.
    ``stop`` stops taking new messages and returns once ``consume`` has returned;
    unsettled deliveries are redelivered. Cancelled, ``consume`` cancels the callbacks in
    progress and returns once they have ended (a worker hands back the tasks it was
    running before it closes its storage).

    A callback that raises is a bug: the consumer logs the error with its traceback and,
    if the delivery is still unsettled, delivers it again after ``FAILED_DELIVERY_DELAY``.
    A message whose broker metadata the consumer cannot read (headers that no Taskport
    process wrote) never reaches the callback: the consumer logs it and moves it to the
    dead-letter destination itself.
    """

    async def consume(
        self, callback: DeliveryCallback, prefetch: int, limits: Mapping[str, int] | None = None
    ) -> None: ...

    async def stop(self) -> None: ...
