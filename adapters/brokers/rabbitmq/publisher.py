"""Publishing outbox messages to RabbitMQ with pipelined publisher confirms."""

from __future__ import annotations

from collections.abc import Sequence

from pika.spec import PERSISTENT_DELIVERY_MODE, BasicProperties

from adapters.brokers.confirms import naming_the_published
from adapters.brokers.rabbitmq.connector import Connector
from adapters.brokers.rabbitmq.options import RabbitMqOptions
from adapters.brokers.rabbitmq.session import all_confirmed
from application.errors import BrokerUnavailable
from application.messages import EVENTS_TOPIC, TaskEventMessage, queue_of
from application.ports.outbox import OutboxMessage
from domain.values import DEFAULT_QUEUE

# How long a publish waits for a connection that is being opened; while RabbitMQ is down
# a publish fails after this, and the outbox relay tries again later.
CONNECT_WAIT_SECONDS = 1.0


class RabbitMqPublisher:
    """Publishes persistent run messages to the task queue of their queue, and task events
    to the events exchange; ``publish`` sends the whole batch, then waits until RabbitMQ
    confirmed every message (``PartlyPublished`` names those it confirmed when it did not
    confirm all)."""

    name = "broker"

    def __init__(self, options: RabbitMqOptions) -> None:
        self._topology = options.topology
        self._connector = Connector(options, "publisher")

    @classmethod
    def from_url(cls, url: str, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> RabbitMqPublisher:
        return cls(RabbitMqOptions.from_url(url, queues))

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        routed = [self._route(message) for message in messages]
        if not routed:
            return
        session = await self._connector.session(wait=CONNECT_WAIT_SECONDS)
        with session.sending_together():
            confirmations = [session.publish(*route) for route in routed]
        try:
            await all_confirmed(confirmations)
        except BrokerUnavailable as exc:
            raise naming_the_published(exc, messages, confirmations) from exc

    def _route(self, message: OutboxMessage) -> tuple[str, bytes, BasicProperties, str, bool]:
        """The arguments of ``AmqpSession.publish`` for ``message``: a run message goes to
        the task queue of its queue (returned if it cannot be routed there), a task event to
        the events exchange with the routing key ``<type>.<kind>`` (dropped by RabbitMQ when
        no queue is bound to hear it)."""
        queue = queue_of(message.topic)
        if queue is not None and queue in self._topology.queues:
            properties = BasicProperties(
                message_id=str(message.id),
                delivery_mode=PERSISTENT_DELIVERY_MODE,
                content_type="application/json",
            )
            return self._topology.task_queue(queue), message.body, properties, "", True
        if message.topic == EVENTS_TOPIC:
            event = TaskEventMessage.decode(message.body)
            properties = BasicProperties(
                message_id=str(message.id),
                delivery_mode=PERSISTENT_DELIVERY_MODE,
                content_type="application/json",
                type=event.type,
                timestamp=int(message.created_at.timestamp()),
                headers={"task_id": str(event.task_id), "kind": event.kind},
            )
            routing_key = f"{event.type}.{event.kind}"
            return routing_key, message.body, properties, self._topology.events_exchange, False
        raise ValueError(f"this broker carries no topic {message.topic!r}")

    async def check(self) -> None:
        await self._connector.session(wait=CONNECT_WAIT_SECONDS)

    async def close(self) -> None:
        await self._connector.close()
