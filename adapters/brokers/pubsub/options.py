"""What a ``TASKPORT_BROKER_URL=pubsub://PROJECT_ID?…`` names: the project, and
Taskport's topics and subscriptions in it."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

from attrs import frozen

from domain.values import DEFAULT_QUEUE, queues_problem

DEFAULT_TOPIC = "taskport-tasks"
DEFAULT_DEAD_LETTER_TOPIC = "taskport-dead-letters"
DEFAULT_EVENTS_TOPIC = "taskport-events"
# Pub/Sub accepts 5..100; the worker dead-letters a message after 100 deliveries itself.
DEFAULT_MAX_DELIVERY_ATTEMPTS = 100


@frozen
class PubSubOptions:
    """``pubsub://PROJECT_ID`` with optional query options:

    - ``topic`` (``taskport-tasks``), ``subscription`` (``<topic>-worker``),
      ``dead_letter_topic`` (``taskport-dead-letters``; its subscription has the same name),
      ``events_topic`` (``taskport-events``: task events, when ``events`` is on, i.e.
      ``TASKPORT_PUBLISH_EVENTS=true``; subscribers make their own subscriptions);
    - for provisioning (``create``, or ``TASKPORT_PUBSUB_CREATE=true``):
      ``max_delivery_attempts`` (5..100, default 100), ``ack_deadline`` (seconds, 10..600,
      default 60), ``min_backoff`` / ``max_backoff`` (seconds, the retry policy, default
      1 and 60), ``push_endpoint`` (makes the task subscriptions push subscriptions).

    ``queues`` are the deployment's queues (every process is given the same ones): each has
    a topic and a subscription of its own. The default queue's are ``topic`` and
    ``subscription`` themselves; queue ``q``'s are ``<topic>-q`` and ``<subscription>-q``.
    """

    project: str
    topic: str = DEFAULT_TOPIC
    subscription: str = f"{DEFAULT_TOPIC}-worker"
    dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC
    events_topic: str = DEFAULT_EVENTS_TOPIC
    events: bool = False
    create: bool = False
    max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS
    ack_deadline_seconds: int = 60
    min_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    push_endpoint: str | None = None
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)

    @classmethod
    def from_url(
        cls,
        url: str,
        create: bool = False,
        events: bool = False,
        queues: Iterable[str] = (DEFAULT_QUEUE,),
    ) -> PubSubOptions:
        parts = urlsplit(url)
        if parts.scheme != "pubsub":
            raise ValueError(f"not a pubsub:// URL: {url!r}")
        project = parts.netloc or parts.path.strip("/")
        if not project:
            raise ValueError("pubsub:// needs a project id: pubsub://PROJECT_ID")
        query = dict(parse_qsl(parts.query))
        known = {
            "topic",
            "subscription",
            "dead_letter_topic",
            "events_topic",
            "create",
            "max_delivery_attempts",
            "ack_deadline",
            "min_backoff",
            "max_backoff",
            "push_endpoint",
        }
        unknown = sorted(set(query) - known)
        if unknown:
            raise ValueError(f"unknown pubsub:// options: {', '.join(unknown)}")
        topic = query.get("topic", DEFAULT_TOPIC)
        options = cls(
            project=project,
            topic=topic,
            subscription=query.get("subscription", f"{topic}-worker"),
            dead_letter_topic=query.get("dead_letter_topic", DEFAULT_DEAD_LETTER_TOPIC),
            events_topic=query.get("events_topic", DEFAULT_EVENTS_TOPIC),
            events=events,
            create=create or query.get("create", "").lower() in ("1", "true", "yes"),
            max_delivery_attempts=int(
                query.get("max_delivery_attempts", DEFAULT_MAX_DELIVERY_ATTEMPTS)
            ),
            ack_deadline_seconds=int(query.get("ack_deadline", 60)),
            min_backoff_seconds=float(query.get("min_backoff", 1)),
            max_backoff_seconds=float(query.get("max_backoff", 60)),
            push_endpoint=query.get("push_endpoint") or None,
            queues=tuple(queues),
        )
        options.validate()
        return options

    def validate(self) -> None:
        if not 5 <= self.max_delivery_attempts <= 100:
            raise ValueError("max_delivery_attempts must be within 5..100")
        if not 10 <= self.ack_deadline_seconds <= 600:
            raise ValueError("ack_deadline must be within 10..600 seconds")
        if not 0 <= self.min_backoff_seconds <= self.max_backoff_seconds <= 600:
            raise ValueError("need 0 <= min_backoff <= max_backoff <= 600 seconds")
        if self.dead_letter_topic == self.topic:
            raise ValueError("the dead-letter topic must differ from the task topic")
        if self.events_topic in (self.topic, self.dead_letter_topic):
            raise ValueError("the events topic must differ from the task and dead-letter topics")
        self._validate_queues()

    def _validate_queues(self) -> None:
        if problem := queues_problem(self.queues):
            raise ValueError(problem)
        for queue in self.queues:
            if self._topic_of(queue) in (self.dead_letter_topic, self.events_topic):
                raise ValueError(
                    f"the topic of queue {queue!r} ({self._topic_of(queue)}) must differ from "
                    "the dead-letter and events topics"
                )
            if self._subscription_of(queue) == self.dead_letter_topic:
                raise ValueError(
                    f"the subscription of queue {queue!r} ({self._subscription_of(queue)}) "
                    "must differ from the dead-letter subscription"
                )

    def _topic_of(self, queue: str) -> str:
        return self.topic if queue == DEFAULT_QUEUE else f"{self.topic}-{queue}"

    def _subscription_of(self, queue: str) -> str:
        return self.subscription if queue == DEFAULT_QUEUE else f"{self.subscription}-{queue}"

    def topic_path_for(self, queue: str) -> str:
        """The topic of the run messages of ``queue``."""
        return f"projects/{self.project}/topics/{self._topic_of(queue)}"

    def subscription_path_for(self, queue: str) -> str:
        """The subscription workers of ``queue`` consume (or Pub/Sub pushes from)."""
        return f"projects/{self.project}/subscriptions/{self._subscription_of(queue)}"

    @property
    def topic_path(self) -> str:
        """The default queue's topic."""
        return self.topic_path_for(DEFAULT_QUEUE)

    @property
    def events_topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.events_topic}"

    @property
    def subscription_path(self) -> str:
        """The default queue's subscription."""
        return self.subscription_path_for(DEFAULT_QUEUE)

    @property
    def dead_letter_topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.dead_letter_topic}"

    @property
    def dead_letter_subscription_path(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.dead_letter_topic}"
