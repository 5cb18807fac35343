"""The messages Taskport puts on the broker, and how domain events become them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from attrs import frozen

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

    def encode(self) -> bytes:
        return json.dumps({"task_id": str(self.task_id)}).encode()

    @classmethod
    def decode(cls, body: bytes) -> RunTaskMessage:
        try:
            data = json.loads(body)
            return cls(task_id=UUID(data["task_id"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise PoisonMessage(f"not a run-task message: {body[:200]!r}") from exc


def messages_for(
    recorded: Sequence[events.TaskEvent], ids: IdGenerator, now: datetime
) -> list[OutboxMessage]:
    """The outbox messages a set of recorded events calls for: one per task that
    entered the queue."""
    return [
        OutboxMessage(ids.new_id(), TASKS_TOPIC, RunTaskMessage(event.task_id).encode(), now)
        for event in recorded
        if isinstance(event, _DISPATCHING_EVENTS)
        or (isinstance(event, events.TaskSubmitted) and not event.scheduled)
    ]
