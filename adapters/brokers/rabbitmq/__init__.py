"""RabbitMQ broker (pika on the asyncio loop): a publisher with pipelined confirms, and a
consumer with delayed redelivery through TTL queues and a dead-letter queue."""

from adapters.brokers.rabbitmq.consumer import RabbitMqConsumer, RabbitMqDelivery
from adapters.brokers.rabbitmq.options import RabbitMqOptions, Topology
from adapters.brokers.rabbitmq.publisher import RabbitMqPublisher

__all__ = [
    "RabbitMqConsumer",
    "RabbitMqDelivery",
    "RabbitMqOptions",
    "RabbitMqPublisher",
    "Topology",
]
