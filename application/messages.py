"""The messages Taskport puts on the broker, and how domain events become them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from attrs import frozen

from application import correlation
from application.errors import PoisonMessage
from application.ports.ids import IdGenerator
from application.ports.outbox import OutboxMessage
from domain import events

TASKS_TOPIC = "tasks"

_DISPATCHING_EVENTS = (events.TaskQueued, events.TaskRequeued)


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
            request = data.get("request_id")
            return cls(
                task_id=UUID(data["task_id"]),
                request_id=request if isinstance(request, str) else None,
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise PoisonMessage(f"not a run-task message: {body[:200]!r}") from exc


def messages_for(
    recorded: Sequence[events.TaskEvent], ids: IdGenerator, now: datetime
) -> list[OutboxMessage]:
    """The outbox messages a set of recorded events calls for: one per task that
    entered the queue."""
    request = correlation.request_id.get()
    return [
        OutboxMessage(
            ids.new_id(), TASKS_TOPIC, RunTaskMessage(event.task_id, request).encode(), now
        )
        for event in recorded
        if isinstance(event, _DISPATCHING_EVENTS)
        or (isinstance(event, events.TaskSubmitted) and not event.scheduled)
    ]
