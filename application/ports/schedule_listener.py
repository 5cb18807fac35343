from __future__ import annotations

from typing import Literal, Protocol

SkipReason = Literal["unknown_kind", "unknown_queue", "invalid_payload", "invalid_task", "expired"]
"""Why an occurrence got no task: its kind is no longer registered, its queue is no longer
one of the deployment's, its payload no longer passes its kind, the task is refused
otherwise (its callback URL, its attempts), or its task would have expired
(``expires_after_seconds``) before a sweep came to submit it."""


class ScheduleListener(Protocol):
    """Hears what the schedule sweep made of the occurrences of schedules, each once
    however many sweeps race on it: ``task_submitted`` when the task of an occurrence was
    created (not when a submit found it there), ``occurrence_skipped`` when the sweep
    moved a schedule past an occurrence that could have no task. Runs on the event loop:
    it must be quick and must not raise."""

    def task_submitted(self, kind: str) -> None: ...

    def occurrence_skipped(self, kind: str, reason: SkipReason) -> None: ...
