"""The messages Taskport puts on the broker, and how domain events become them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from attrs import frozen

from application import correlation
from application.errors import PoisonMessage
from application.outcomes import finished_task, instant, outcomes
from application.ports.ids import IdGenerator
from application.ports.outbox import OutboxMessage
from domain import events
from domain.task import Task
from domain.values import DEFAULT_QUEUE, QUEUE_PATTERN

TASKS_TOPIC = "tasks"
"""The topic of the run messages of the default queue; those of another queue go to
``tasks.<queue>`` (``task_topic``)."""
EVENTS_TOPIC = "events"
"""Where a task's outcomes are published for other systems, when events are on."""


def task_topic(queue: str) -> str:
    """The topic of the run messages of the tasks of ``queue``."""
    return TASKS_TOPIC if queue == DEFAULT_QUEUE else f"{TASKS_TOPIC}.{queue}"


def queue_of(topic: str) -> str | None:
    """The queue whose run messages go to ``topic``; ``None`` for another topic."""
    if topic == TASKS_TOPIC:
        return DEFAULT_QUEUE
    prefix, dot, queue = topic.partition(".")
    if prefix == TASKS_TOPIC and dot and QUEUE_PATTERN.fullmatch(queue):
        return queue
    return None


_DISPATCHING_EVENTS = (events.TaskQueued, events.TaskRequeued)
# What reading a body that is not the message expected raises: json.loads raises
# RecursionError for JSON nested deeper than Python recurses, ValueError for the rest.
_UNDECODABLE = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


@frozen
class RunTaskMessage:
    """Asks a worker to run the task ``task_id``."""

    task_id: UUID
    request_id: str | None = None
    """The HTTP request that led to this run, for the worker's logs."""

    def encode(self) -> bytes:
        data = {"task_id": str(self.task_id)}
        if self.request_id is not None:
            data["request_id"] = self.request_id
        return json.dumps(data).encode()

    @classmethod
    def decode(cls, body: bytes) -> RunTaskMessage:
        try:
            data = json.loads(body)
            return cls(
                task_id=UUID(data["task_id"]),
                request_id=correlation.fit_request_id(data.get("request_id")),
            )
        except _UNDECODABLE as exc:
            raise PoisonMessage(f"not a run-task message: {body[:200]!r}") from exc


def messages_for(
    recorded: Sequence[events.TaskEvent],
    tasks: Sequence[Task],
    ids: IdGenerator,
    now: datetime,
) -> list[OutboxMessage]:
    """The outbox messages a set of recorded events of ``tasks`` calls for: one per task
    that entered the queue, on its queue's topic, naming the request it was queued in, or
    else (a sweep queued it) the request that submitted it."""
    request = correlation.request_id.get()
    by_id = {task.id: task for task in tasks}
    return [
        OutboxMessage(
            ids.new_id(),
            task_topic(by_id[event.task_id].queue),
            RunTaskMessage(event.task_id, request or by_id[event.task_id].request_id).encode(),
            now,
        )
        for event in recorded
        if isinstance(event, _DISPATCHING_EVENTS)
        or (isinstance(event, events.TaskSubmitted) and not event.scheduled)
    ]


@frozen
class TaskEventMessage:
    """An event on ``EVENTS_TOPIC``: a task finished (``type`` is ``task.succeeded``,
    ``task.failed`` or ``task.cancelled``). Brokers route it by ``type`` and ``kind``.

    Its body is the callbacks' body (the type and the finished task, its owner included,
    see ``outcome_body``) with the event's ``id``, unique per event (a subscriber drops
    repeats by it), and ``occurred_at``."""

    type: str
    kind: str
    task_id: UUID

    @classmethod
    def decode(cls, body: bytes) -> TaskEventMessage:
        try:
            data = json.loads(body)
            task = data["task"]
            return cls(type=str(data["type"]), kind=str(task["kind"]), task_id=UUID(task["id"]))
        except _UNDECODABLE as exc:
            raise PoisonMessage(f"not a task event: {body[:200]!r}") from exc


def event_messages(
    changed: Sequence[Task], recorded: Sequence[events.TaskEvent], ids: IdGenerator, now: datetime
) -> list[OutboxMessage]:
    """The outbox messages on ``EVENTS_TOPIC`` for the outcomes among ``recorded``."""
    found = []
    for outcome in outcomes(changed, recorded):
        message_id = ids.new_id()
        body = {
            "id": str(message_id),
            "type": outcome.type,
            "occurred_at": instant(outcome.event.occurred_at),
            "task": finished_task(outcome.task),
        }
        found.append(
            OutboxMessage(
                message_id, EVENTS_TOPIC, json.dumps(body, separators=(",", ":")).encode(), now
            )
        )
    return found


def task_named_by(message: OutboxMessage) -> UUID | None:
    """The task a message is about: the one it asks to run, or the one whose outcome it
    tells; ``None`` for a body that is neither."""
    decode = TaskEventMessage.decode if message.topic == EVENTS_TOPIC else RunTaskMessage.decode
    try:
        return decode(message.body).task_id
    except PoisonMessage:
        return None
