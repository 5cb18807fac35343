"""Publishing outbox messages to RabbitMQ with pipelined publisher confirms."""

from __future__ import annotations

from collections.abc import Sequence

from pika.spec import PERSISTENT_DELIVERY_MODE, BasicProperties

from adapters.brokers.rabbitmq.connector import Connector
from adapters.brokers.rabbitmq.options import RabbitMqOptions
from adapters.brokers.rabbitmq.session import all_confirmed
from application.messages import TASKS_TOPIC
from application.ports.outbox import OutboxMessage

# How long a publish waits for a connection that is being opened; while RabbitMQ is down
# a publish fails after this, and the outbox relay tries again later.
CONNECT_WAIT_SECONDS = 1.0


class RabbitMqPublisher:
    """Publishes persistent messages to the task queue; ``publish`` sends the whole batch,
    then waits until RabbitMQ confirmed every message."""

    name = "broker"

    def __init__(self, options: RabbitMqOptions) -> None:
        self._topology = options.topology
        self._connector = Connector(options, "publisher")

    @classmethod
    def from_url(cls, url: str) -> RabbitMqPublisher:
        return cls(RabbitMqOptions.from_url(url))

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        for message in messages:
            if message.topic != TASKS_TOPIC:
                raise ValueError(
                    f"this broker carries topic {TASKS_TOPIC!r}, not {message.topic!r}"
                )
        if not messages:
            return
        session = await self._connector.session(wait=CONNECT_WAIT_SECONDS)
        confirmations = [
            session.publish(
                self._topology.queue_for(message.topic),
                message.body,
                BasicProperties(
                    message_id=str(message.id),
                    delivery_mode=PERSISTENT_DELIVERY_MODE,
                    content_type="application/json",
                ),
            )
            for message in messages
        ]
        await all_confirmed(confirmations)

    async def check(self) -> None:
        await self._connector.session(wait=CONNECT_WAIT_SECONDS)

    async def close(self) -> None:
        await self._connector.close()
