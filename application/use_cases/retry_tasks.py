"""Retry by hand the owner's finished tasks that match a filter: every failed task of a
kind once its bug is fixed, say."""

from __future__ import annotations

from datetime import datetime

from application.use_cases.bulk_change import OwnedTasksChange
from domain.task import Task
from domain.values import TaskStatus

RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})
"""The statuses a retry by hand takes a task from."""


class RetryTasksHandler(OwnedTasksChange):
    """Sends the owner's finished tasks that match back to the queue, each with fresh
    attempts."""

    takes = RETRYABLE

    def change(self, task: Task, now: datetime) -> None:
        task.retry(now)
