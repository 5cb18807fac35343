"""A task's outcomes (it SUCCEEDED, FAILED or was CANCELLED) as the world outside hears of
them: through its callback URL, and as events on the broker."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from attrs import frozen

from domain import events
from domain.task import Task
from domain.values import JsonValue

EVENT_TYPES: dict[type[events.TaskEvent], str] = {
    events.TaskSucceeded: "task.succeeded",
    events.TaskFailed: "task.failed",
    events.TaskCancelled: "task.cancelled",
}


@frozen
class Outcome:
    """One of ``recorded`` that finished one of the changed tasks."""

    task: Task
    event: events.TaskEvent
    type: str


def outcomes(changed: Iterable[Task], recorded: Sequence[events.TaskEvent]) -> Iterator[Outcome]:
    """The outcomes among ``recorded``, each with the task it finished (one of ``changed``),
    in the order they were recorded."""
    tasks = {task.id: task for task in changed}
    for event in recorded:
        event_type = EVENT_TYPES.get(type(event))
        task = tasks.get(event.task_id)
        if event_type is not None and task is not None:
            yield Outcome(task, event, event_type)


def outcome_body(task: Task, event_type: str) -> JsonValue:
    """The event's type and the finished task (see ``finished_task``)."""
    return {"type": event_type, "task": finished_task(task)}


def finished_task(task: Task) -> dict[str, JsonValue]:
    """A finished task as its outcome tells it: its id, owner, kind, status, attempts, when
    it was created and finished, its result or error, and the schedule that submitted it,
    with the field names and formats of ``GET /v1/tasks/{id}``. The owner is there for a
    receiver of callbacks: the secrets that sign them are the deployment's, and any owner
    may name any callback URL."""
    error = task.error
    return {
        "id": str(task.id),
        "owner": task.owner,
        "kind": task.kind,
        "status": task.status.value,
        "attempts": task.attempts,
        "created_at": instant(task.created_at),
        "finished_at": instant(task.finished_at),
        "result": task.result,
        "error": (
            {"type": error.type, "message": error.message, "retryable": error.retryable}
            if error
            else None
        ),
        "schedule_id": str(task.schedule_id) if task.schedule_id is not None else None,
    }


def instant(value: datetime | None) -> str | None:
    """An instant as the API writes it: ISO 8601 in UTC, with ``Z``."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
