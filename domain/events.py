"""Domain events: facts recorded by the Task aggregate as it changes state."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from attrs import frozen

from domain.values import JsonValue, TaskError


@frozen
class TaskEvent:
    task_id: UUID
    kind: str
    occurred_at: datetime


@frozen
class TaskSubmitted(TaskEvent):
    scheduled: bool


@frozen
class TaskQueued(TaskEvent):
    """A scheduled task became due (first run or a retry after its backoff)."""


@frozen
class TaskStarted(TaskEvent):
    attempt: int


@frozen
class TaskRetryScheduled(TaskEvent):
    attempt: int
    error: TaskError
    run_at: datetime


@frozen
class TaskSucceeded(TaskEvent):
    attempt: int
    result: JsonValue


@frozen
class TaskFailed(TaskEvent):
    attempt: int
    error: TaskError


@frozen
class TaskCancelRequested(TaskEvent):
    """Cancel was asked while the task runs; the worker running it honours it."""


@frozen
class TaskCancelled(TaskEvent):
    pass


@frozen
class TaskRequeued(TaskEvent):
    """A finished task was sent back to the queue by a manual retry."""
