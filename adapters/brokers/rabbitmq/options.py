"""What a ``TASKPORT_BROKER_URL=amqp://…`` names: the server, and Taskport's queues on it."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pika
from attrs import frozen

QueueType = Literal["quorum", "classic"]

DEFAULT_PREFIX = "taskport"
DELAY_TIERS = (
    timedelta(seconds=1),
    timedelta(seconds=5),
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(hours=1),
)


@frozen
class Topology:
    """The queues of one Taskport deployment, all named after ``prefix``.

    Task events (``TASKPORT_PUBLISH_EVENTS``) go to a topic exchange, which subscribers bind
    their own queues to. Delayed redelivery needs no plugin: each delay tier is a queue
    whose messages expire after the tier's TTL and are dead-lettered back to the task
    queue.
    """

    prefix: str = DEFAULT_PREFIX
    queue_type: QueueType = "quorum"
    delay_tiers: tuple[timedelta, ...] = DELAY_TIERS

    def queue_for(self, topic: str) -> str:
        return f"{self.prefix}.{topic}"

    @property
    def events_exchange(self) -> str:
        """The topic exchange task events go to, routed by ``<type>.<kind>``."""
        return f"{self.prefix}.events"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dead-letters"

    def delay_queue(self, tier: timedelta) -> str:
        return f"{self.prefix}.delay.{int(tier.total_seconds() * 1000)}ms"

    def tier_for(self, delay: timedelta) -> timedelta:
        """The shortest tier not shorter than ``delay`` (the longest for longer delays)."""
        return next((tier for tier in self.delay_tiers if tier >= delay), self.delay_tiers[-1])


@frozen
class RabbitMqOptions:
    """Connection parameters plus Taskport's own query options (``prefix``, ``queue_type``);
    every other query option is pika's (``heartbeat``, ``socket_timeout``, …)."""

    url: str
    topology: Topology

    @classmethod
    def from_url(cls, url: str) -> RabbitMqOptions:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        prefix = query.pop("prefix", DEFAULT_PREFIX)
        queue_type = query.pop("queue_type", "quorum")
        if queue_type not in ("quorum", "classic"):
            raise ValueError(f"queue_type must be quorum or classic, not {queue_type!r}")
        if not prefix:
            raise ValueError("prefix must not be empty")
        server_url = urlunsplit(parts._replace(query=urlencode(query)))
        pika.URLParameters(server_url)  # refuses a malformed URL now rather than at connect
        return cls(server_url, Topology(prefix, cast(QueueType, queue_type)))

    def parameters(self) -> pika.URLParameters:
        return pika.URLParameters(self.url)
