"""A batch of publishes reaches RabbitMQ in one write, at once: pika alone writes every
frame with a system call of its own, three per message, on the event loop's next turn."""

from __future__ import annotations

from typing import Any

import pytest
from pika.spec import BasicProperties

from adapters.brokers.rabbitmq import RabbitMqOptions, RabbitMqPublisher
from adapters.brokers.rabbitmq.session import all_confirmed
from domain.values import DEFAULT_QUEUE
from tests.factories import make_message
from tests.rabbitmq import broker_url, read_queue


async def test_a_batch_of_publishes_is_one_write_and_every_message_arrives(
    rabbitmq_vhost: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = RabbitMqOptions.from_url(broker_url(rabbitmq_vhost))
    publisher = RabbitMqPublisher(options)
    messages = [make_message(body=f"message {n}".encode()) for n in range(50)]
    try:
        await publisher.publish(messages[:1])  # connects and declares the queues
        session = await publisher._connector.session(wait=5)
        transport = session._connection._transport
        writes: list[bytes] = []

        def write(data: bytes, *, original: Any = transport.write) -> None:
            writes.append(data)
            original(data)

        monkeypatch.setattr(transport, "write", write)
        await publisher.publish(messages[1:])
        assert len(writes) == 1
    finally:
        await publisher.close()
    bodies = await read_queue(options.url, options.topology.task_queue(DEFAULT_QUEUE))
    assert bodies == [message.body for message in messages]


async def test_a_publish_is_written_before_the_event_loop_turns(rabbitmq_vhost: str) -> None:
    options = RabbitMqOptions.from_url(broker_url(rabbitmq_vhost))
    publisher = RabbitMqPublisher(options)
    queue = options.topology.task_queue(DEFAULT_QUEUE)
    try:
        await publisher.publish([make_message()])  # connects and declares the queues
        session = await publisher._connector.session(wait=5)
        confirmed = session.publish(queue, b"now", BasicProperties(message_id="now"))
        assert session._connection._transport.get_write_buffer_size() == 0
        await all_confirmed([confirmed])
    finally:
        await publisher.close()
    assert (await read_queue(options.url, queue))[-1] == b"now"
