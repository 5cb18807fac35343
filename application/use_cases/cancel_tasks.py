"""Cancel the owner's waiting tasks that match a filter: what waits in a queue, of a kind,
or from a schedule."""

from __future__ import annotations

from datetime import datetime

from application.use_cases.bulk_change import OwnedTasksChange
from domain.task import Task
from domain.values import TaskStatus

WAITING = frozenset({TaskStatus.SCHEDULED, TaskStatus.QUEUED})
"""The statuses a bulk cancel takes. A running task is cancelled by request, one at a time
(``CancelTask``): it stays RUNNING until its worker stops it."""


class CancelTasksHandler(OwnedTasksChange):
    """Cancels the owner's waiting tasks that match."""

    takes = WAITING

    def change(self, task: Task, now: datetime) -> None:
        task.cancel(now)
