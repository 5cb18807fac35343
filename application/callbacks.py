"""Callbacks: a task submitted with a ``callback_url`` has its outcome POSTed there each time
it finishes (SUCCEEDED, FAILED or CANCELLED).

A delivery is itself a task, of the ``http`` kind, owned by the owner of the finished task
and added in the transaction that records the outcome: no outcome is committed without its
delivery, which is then stored, dispatched and retried like any task (the receiver down,
or answering 408, 429 or 5xx), and stays visible through the API, to be retried by hand,
once its attempts run out. A receiver may get a delivery more than once; the finished
task's ``id`` and ``finished_at`` tell a repeat. A delivery's payload says it is one
(``callback``), which a submitted task cannot: the ``http`` kind signs those alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

from attrs import evolve

from application.outcomes import outcome_body, outcomes
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


def callback_request(url: str, event_type: str, body: JsonValue) -> dict[str, JsonValue]:
    """The payload of an ``http`` task that POSTs ``body`` to ``url`` as a callback would,
    as a client could submit it."""
    return {
        "method": "POST",
        "url": url,
        "headers": {"Taskport-Event": event_type},
        "json": body,
        "timeout": CALLBACK_CALL_SECONDS,
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
        with_callback = [task for task in changed if task.callback_url is not None]
        if not with_callback:
            return []
        return [
            Task.submit(
                id=self._ids.new_id(),
                owner=outcome.task.owner,
                kind=CALLBACK_KIND,
                payload={
                    **callback_request(
                        outcome.task.callback_url,
                        outcome.type,
                        outcome_body(outcome.task, outcome.type),
                    ),
                    "callback": True,
                },
                now=outcome.event.occurred_at,
                retry_policy=self._retry_policy,
                timeout=CALLBACK_TIMEOUT,
                # Run by the workers that ran the task: a deployment need not have workers
                # on every queue.
                queue=outcome.task.queue,
            )
            for outcome in outcomes(with_callback, recorded)
            if outcome.task.callback_url is not None
        ]
