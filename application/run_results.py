"""What a run of a delivered task came to (``RunResult``), and what a batch of its writes
that did not commit leaves to write again (``Unwritten``): shared by the claims
(``application.claims``) and the outcome writes (``application.outcome_writer``) of
``RunTaskHandler``."""

from __future__ import annotations

import enum
from datetime import timedelta

from attrs import frozen

from application.recorder import Changes
from domain.task import Task
from domain.values import TaskStatus

CONFLICT_RETRIES = 5
"""Times a run reads its task again and writes its change alone after a conflict."""
MAX_BATCH = 100
"""Claims (or outcomes) written in one unit of work at most."""
BATCHES = 2
"""Units of work writing claims (and as many writing outcomes) at a time."""


class Outcome(enum.Enum):
    RAN = "ran"
    """An attempt ran and its outcome is committed."""
    NOTHING_TO_DO = "nothing to do"
    """The task is not waiting to run (finished, cancelled, not due, a duplicate)."""
    BUSY = "busy"
    """Another worker holds the task; look again once its lease ends."""
    UNKNOWN_TASK = "unknown task"


@frozen
class RunResult:
    outcome: Outcome
    status: TaskStatus | None = None
    retry_after: timedelta | None = None


@frozen
class Unwritten:
    """A batch did not commit: the change to write again alone, and what the batch
    tried to write (found stored as it is, it was written after all)."""

    attempted: Task | None = None
    changes: Changes | None = None


def written(stored: Task, unwritten: Unwritten) -> Changes | None:
    """The changes of ``unwritten`` if a batch wrote them after all (a storage without
    transactions writes the tasks of a batch before the one that conflicted)."""
    attempted = unwritten.attempted
    if (
        attempted is not None
        and stored.version == attempted.version
        and stored.updated_at == attempted.updated_at
        and stored.status is attempted.status
    ):
        return unwritten.changes
    return None
