"""What a ``TASKPORT_BROKER_URL=amqp://…`` names: the server, and Taskport's queues on it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pika
from attrs import frozen

from domain.values import DEFAULT_QUEUE, queues_problem

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
    """The queues of one Taskport deployment, all named after ``prefix``: one task queue per
    queue of the deployment (``<prefix>.tasks`` for the default one, ``<prefix>.tasks.<name>``
    for the others).

    Task events (``TASKPORT_PUBLISH_EVENTS``) go to a topic exchange, which subscribers bind
    their own queues to. Delayed redelivery needs no plugin: each delay tier of a task queue
    is a queue whose messages expire after the tier's TTL and are dead-lettered back to
    that task queue.
    """

    prefix: str = DEFAULT_PREFIX
    queue_type: QueueType = "quorum"
    delay_tiers: tuple[timedelta, ...] = DELAY_TIERS
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    """The deployment's queues (``TASKPORT_QUEUES``): each one's task queue is declared."""

    def task_queue(self, queue: str) -> str:
        """The RabbitMQ queue of the run messages of ``queue``."""
        if queue == DEFAULT_QUEUE:
            return f"{self.prefix}.tasks"
        return f"{self.prefix}.tasks.{queue}"

    @property
    def events_exchange(self) -> str:
        """The topic exchange task events go to, routed by ``<type>.<kind>``."""
        return f"{self.prefix}.events"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dead-letters"

    def delay_queue(self, tier: timedelta, queue: str = DEFAULT_QUEUE) -> str:
        """Where a message of ``queue`` waits ``tier`` before going back to its task queue
        (the default queue's tiers keep the names they had before there were others)."""
        milliseconds = int(tier.total_seconds() * 1000)
        if queue == DEFAULT_QUEUE:
            return f"{self.prefix}.delay.{milliseconds}ms"
        return f"{self.task_queue(queue)}.delay.{milliseconds}ms"

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
    def from_url(cls, url: str, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> RabbitMqOptions:
        """``queues``: the deployment's queues (``TASKPORT_QUEUES``)."""
        if problem := queues_problem(queues):
            raise ValueError(problem)
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
        return cls(server_url, Topology(prefix, cast(QueueType, queue_type), queues=tuple(queues)))

    def parameters(self) -> pika.URLParameters:
        return pika.URLParameters(self.url)
