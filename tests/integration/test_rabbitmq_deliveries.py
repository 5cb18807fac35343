"""What the broker contract cannot show on its own: counts on classic queues, delays
longer than the longest delay tier, the reason a message was dead-lettered, and what a
worker does with messages that any AMQP client may publish to the task queue."""

from __future__ import annotations

import asyncio
import logging
import struct
import uuid
from datetime import timedelta
from typing import Any

import pytest
from attrs import evolve

from adapters.brokers.rabbitmq import RabbitMqConsumer, RabbitMqOptions, RabbitMqPublisher
from application.messages import RunTaskMessage
from application.use_cases.get_task import GetTask
from application.use_cases.submit_task import SubmitTask
from domain.values import DEFAULT_QUEUE, TaskStatus
from entrypoints.container import create_container
from entrypoints.settings import Settings
from tests.consuming import consuming
from tests.factories import make_message
from tests.polling import eventually
from tests.rabbitmq import broker_url, publish, read_messages

REASON = "x-taskport-dead-letter-reason"


def field(kind: bytes, value: bytes, name: bytes = b"x") -> bytes:
    """One entry of an AMQP field table: its name, its type octet, its value."""
    return struct.pack("B", len(name)) + name + kind + value


def nested(kind: bytes, depth: int) -> bytes:
    """A field table holding a table (``F``) or an array (``A``) ``depth`` levels deep."""
    value = struct.pack(">I", 0)
    for _ in range(depth):
        inner = field(kind, value, b"") if kind == b"F" else kind + value
        value = struct.pack(">I", len(inner)) + inner
    return field(kind, value)


UNKNOWN_TASK = RunTaskMessage(uuid.UUID(int=1)).encode()
HOSTILE = [
    pytest.param(b"[" * 5000 + b"]" * 5000, {}, "not a run-task message: b'[[[", id="lists"),
    pytest.param(
        b'{"a":' * 5000 + b"1" + b"}" * 5000, {}, "not a run-task message: b'{", id="objects"
    ),
    pytest.param(
        UNKNOWN_TASK,
        {"x-taskport-due-ms": "soon"},
        "header x-taskport-due-ms is not a time: 'soon'",
        id="due-text",
    ),
    pytest.param(
        UNKNOWN_TASK,
        {"x-taskport-due-ms": "1" + "0" * 30},
        "header x-taskport-due-ms is not a time: '1000000",
        id="due-digits",
    ),
    pytest.param(
        UNKNOWN_TASK,
        {"x-taskport-due-ms": 2**63 - 1},
        f"header x-taskport-due-ms is not a time: {2**63 - 1}",
        id="due-past-the-calendar",
    ),
    pytest.param(
        UNKNOWN_TASK,
        {"x-taskport-deliveries": "many"},
        "header x-taskport-deliveries is not a count: 'many'",
        id="deliveries-text",
    ),
    pytest.param(
        UNKNOWN_TASK,
        {"x-taskport-deliveries": -1},
        "header x-taskport-deliveries is not a count: -1",
        id="deliveries-negative",
    ),
    pytest.param(
        UNKNOWN_TASK,
        {"x-delivery-count": "many"},
        "header x-delivery-count is not a count: 'many'",
        id="quorum-count-text",
    ),
    pytest.param(
        UNKNOWN_TASK,
        field(b"T", struct.pack(">Q", 2**63)),
        "headers cannot be read: OverflowError",
        id="timestamp-past-the-calendar",
    ),
    pytest.param(
        UNKNOWN_TASK,
        nested(b"F", 3000),
        "headers cannot be read: RecursionError",
        id="tables",
    ),
    pytest.param(
        UNKNOWN_TASK,
        nested(b"A", 3000),
        "headers cannot be read: RecursionError",
        id="arrays",
    ),
]


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
    queue = options.topology.task_queue(DEFAULT_QUEUE)
    assert [body for body, _ in await read_messages(options.url, queue)] == [b"message 2"]


@pytest.mark.parametrize(("body", "headers", "reason"), HOSTILE)
async def test_a_hostile_message_is_dead_lettered_once_and_the_next_task_runs(
    rabbitmq_vhost: str,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    headers: dict[str, Any] | bytes,
    reason: str,
) -> None:
    options = RabbitMqOptions.from_url(broker_url(rabbitmq_vhost))
    tasks_queue = options.topology.task_queue(DEFAULT_QUEUE)
    app = create_container(Settings(storage_url="memory://", broker_url="memory://"))
    task = (await app.submit_task()(SubmitTask(owner="local", kind="echo", payload=1))).task
    publisher = RabbitMqPublisher(options)
    await publisher.check()  # the queues exist
    await publisher.close()
    await publish(options.url, tasks_queue, body, headers, message_id="hostile")
    await publish(options.url, tasks_queue, RunTaskMessage(task.id).encode(), {}, "valid")

    async def succeeded() -> bool:
        found = await app.get_task()(GetTask("local", task.id))
        return found.status is TaskStatus.SUCCEEDED

    dead: list[tuple[bytes, dict[str, Any]]] = []

    async def dead_lettered() -> bool:
        dead[:] = await read_messages(options.url, options.topology.dead_letter_queue)
        return bool(dead)

    with caplog.at_level(logging.INFO):
        async with consuming(RabbitMqConsumer(options), app.process_delivery()):
            await eventually(succeeded)
            await eventually(dead_lettered)
    [(dead_body, dead_headers)] = dead
    assert dead_body == body
    assert dead_headers["x-taskport-dead-letter-reason"].startswith(reason)
    assert await read_messages(options.url, tasks_queue) == []  # nothing left unsettled
    told = [record.getMessage() for record in caplog.records if "hostile" in record.getMessage()]
    assert told == [f"dead-lettering message hostile: {dead_headers[REASON]}"]
    assert not [record for record in caplog.records if "reconnecting" in record.getMessage()]
