"""What the broker contract cannot show on its own: counts on classic queues, delays
longer than the longest delay tier, the reason a message was dead-lettered."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from attrs import evolve

from adapters.brokers.rabbitmq import RabbitMqConsumer, RabbitMqOptions, RabbitMqPublisher
from tests.consuming import consuming
from tests.factories import make_message
from tests.polling import eventually
from tests.rabbitmq import broker_url, read_messages


async def test_a_classic_queue_counts_every_redelivery(rabbitmq_vhost: str) -> None:
    options = RabbitMqOptions.from_url(broker_url(rabbitmq_vhost, "classic"))
    publisher = RabbitMqPublisher(options)
    await publisher.publish([make_message(b"crashes its workers")])
    counts: list[int] = []
    for _ in range(3):
        seen = asyncio.Event()

        async def die(delivery: Any, seen: asyncio.Event = seen) -> None:
            counts.append(delivery.delivery_count)
            seen.set()

        dying = asyncio.create_task(RabbitMqConsumer(options).consume(die, 1))
        await asyncio.wait_for(seen.wait(), 10)
        dying.cancel()
        await asyncio.gather(dying, return_exceptions=True)
    await publisher.close()
    assert counts == [1, 2, 3]


async def test_a_delay_longer_than_the_longest_tier_is_waited_out(rabbitmq_vhost: str) -> None:
    options = RabbitMqOptions.from_url(broker_url(rabbitmq_vhost))
    short_tiers = evolve(options.topology, delay_tiers=(timedelta(milliseconds=500),))
    options = evolve(options, topology=short_tiers)
    publisher, consumer = RabbitMqPublisher(options), RabbitMqConsumer(options)
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, float]] = []

    async def nack_first(delivery: Any) -> None:
        seen.append((delivery.delivery_count, loop.time()))
        if delivery.delivery_count == 1:
            await delivery.nack(timedelta(seconds=1.5))
        else:
            await delivery.ack()

    await publisher.publish([make_message(b"later")])
    consuming = asyncio.create_task(consumer.consume(nack_first, 1))
    try:
        await eventually(lambda: len(seen) == 2)
    finally:
        await consumer.stop()
        await asyncio.gather(consuming, return_exceptions=True)
        await publisher.close()
    (first, at_first), (second, at_second) = seen
    assert (first, second) == (1, 2)
    assert at_second - at_first >= 1.49


async def test_a_dead_letter_carries_its_reason_and_delivery_count(rabbitmq_vhost: str) -> None:
    options = RabbitMqOptions.from_url(broker_url(rabbitmq_vhost))
    publisher, consumer = RabbitMqPublisher(options), RabbitMqConsumer(options)
    message = make_message(b"poison")

    async def reject(delivery: Any) -> None:
        await delivery.reject("cannot decode")

    await publisher.publish([message])
    dead: list[tuple[bytes, dict[str, Any]]] = []

    async def dead_lettered() -> bool:
        dead[:] = await read_messages(options.url, options.topology.dead_letter_queue)
        return bool(dead)

    try:
        async with consuming(consumer, reject, prefetch=1):
            await eventually(dead_lettered)
    finally:
        await publisher.close()
    [(body, headers)] = dead
    assert body == b"poison"
    assert headers["x-taskport-dead-letter-reason"] == "cannot decode"
    assert headers["x-taskport-deliveries"] == 1


async def test_acks_sent_together_never_ack_a_delivery_still_in_hand(rabbitmq_vhost: str) -> None:
    options = RabbitMqOptions.from_url(broker_url(rabbitmq_vhost))
    publisher, consumer = RabbitMqPublisher(options), RabbitMqConsumer(options)
    await publisher.publish([make_message(f"message {n}".encode()) for n in range(6)])
    held: list[Any] = []
    released = asyncio.Event()

    async def hold(delivery: Any) -> None:
        held.append(delivery)
        await released.wait()

    consuming = asyncio.create_task(consumer.consume(hold, 6))
    try:
        await eventually(lambda: len(held) == 6)
        held.sort(key=lambda delivery: delivery.body)
        # Acked in one turn of the loop: 0 and 1 older than the one in hand (2), 3 to 5 not.
        for delivery in (held[1], held[0], held[3], held[5], held[4]):
            await delivery.ack()
        released.set()
    finally:
        await consumer.stop()
        await asyncio.gather(consuming, return_exceptions=True)
        await publisher.close()
    queue = options.topology.queue_for("tasks")
    assert [body for body, _ in await read_messages(options.url, queue)] == [b"message 2"]
