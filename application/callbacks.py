"""Callbacks: a task submitted with a ``callback_url`` has its outcome POSTed there each time
it finishes (SUCCEEDED, FAILED or CANCELLED).

A delivery is itself a task, of the ``http`` kind, owned by the owner of the finished task
and added in the transaction that records the outcome: no outcome is committed without its
delivery, which is then stored, dispatched and retried like any task (the receiver down,
or answering 408, 429 or 5xx), and stays visible through the API, to be retried by hand,
once its attempts run out. A receiver may get a delivery more than once; the finished
task's ``id`` and ``finished_at`` tell a repeat.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from attrs import evolve

from application.ports.ids import IdGenerator
from domain import events
from domain.task import Task
from domain.values import JsonValue, RetryPolicy

CALLBACK_KIND = "http"
CALLBACK_CALL_SECONDS = 30
"""The time limit of one call to the receiver."""
CALLBACK_TIMEOUT = timedelta(seconds=60)
CALLBACK_ATTEMPTS = 10
"""With the default backoff (1 s doubling up to 300 s), the last attempt comes about
fifteen minutes after the first."""

EVENT_TYPES: dict[type[events.TaskEvent], str] = {
    events.TaskSucceeded: "task.succeeded",
    events.TaskFailed: "task.failed",
    events.TaskCancelled: "task.cancelled",
}


def callback_request(url: str, event_type: str, body: JsonValue) -> JsonValue:
    """The payload of the ``http`` task that POSTs ``body`` to ``url``."""
    return {
        "method": "POST",
        "url": url,
        "headers": {"Taskport-Event": event_type},
        "json": body,
        "timeout": CALLBACK_CALL_SECONDS,
    }


def outcome_body(task: Task, event_type: str) -> JsonValue:
    """What the receiver gets: the event's type and the finished task (its id, kind,
    status, attempts, when it was created and finished, its result or error), with the
    field names and formats of ``GET /v1/tasks/{id}``."""
    error = task.error
    return {
        "type": event_type,
        "task": {
            "id": str(task.id),
            "kind": task.kind,
            "status": task.status.value,
            "attempts": task.attempts,
            "created_at": _instant(task.created_at),
            "finished_at": _instant(task.finished_at),
            "result": task.result,
            "error": (
                {"type": error.type, "message": error.message, "retryable": error.retryable}
                if error
                else None
            ),
        },
    }


class Callbacks:
    """Makes the tasks that deliver the outcomes of finished tasks to their callback URLs."""

    def __init__(self, ids: IdGenerator, retry_policy: RetryPolicy) -> None:
        """``retry_policy`` gives the backoff between attempts (the deployment's); a
        delivery gets ``CALLBACK_ATTEMPTS``."""
        self._ids = ids
        self._retry_policy = evolve(retry_policy, max_attempts=CALLBACK_ATTEMPTS)

    def deliveries(
        self, changed: Iterable[Task], recorded: Sequence[events.TaskEvent]
    ) -> list[Task]:
        """A new delivery task for each of ``recorded`` that finished one of ``changed``
        with a callback URL."""
        with_callback = {task.id: task for task in changed if task.callback_url is not None}
        if not with_callback:
            return []
        found = []
        for event in recorded:
            event_type = EVENT_TYPES.get(type(event))
            task = with_callback.get(event.task_id)
            if event_type is None or task is None or task.callback_url is None:
                continue
            found.append(
                Task.submit(
                    id=self._ids.new_id(),
                    owner=task.owner,
                    kind=CALLBACK_KIND,
                    payload=callback_request(
                        task.callback_url, event_type, outcome_body(task, event_type)
                    ),
                    now=event.occurred_at,
                    retry_policy=self._retry_policy,
                    timeout=CALLBACK_TIMEOUT,
                )
            )
        return found


def _instant(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
