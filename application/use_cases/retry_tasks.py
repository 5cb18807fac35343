"""Retry by hand the owner's finished tasks that match a filter: every failed task of a
kind once its bug is fixed, say."""

from __future__ import annotations

from datetime import datetime

from application.use_cases.bulk_change import BulkChange, MatchingTasks, OwnedTasksChange
from domain.task import Task
from domain.values import TaskStatus

RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})
"""The statuses a retry by hand takes a task from."""


class RetryTasksHandler(OwnedTasksChange):
    """Sends up to ``matching.limit`` of the owner's tasks that match back to the queue,
    each with fresh attempts; their statuses must be among ``RETRYABLE`` (``ValueError``
    otherwise)."""

    def change(self, task: Task, now: datetime) -> None:
        task.retry(now)

    async def __call__(self, matching: MatchingTasks) -> BulkChange:
        if not matching.statuses or not matching.statuses <= RETRYABLE:
            raise ValueError(
                f"a bulk retry takes tasks in {sorted(s.value for s in RETRYABLE)} only"
            )
        return await self.apply_matching(matching)
