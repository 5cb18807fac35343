"""Schedules: a task submitted again and again, at the times a cron expression names.

A schedule holds what each of its tasks is (``TaskTemplate``), when (``cron``, read in
``timezone``), and the next time it is due. Each time it comes due, one task is submitted
for that occurrence: ``occurrence_key`` is the task's idempotency key, so however many
sweeps see it due at once, and however often one fails halfway, the occurrence has one task.
Occurrences missed while nothing ran collapse into one: the next after it is the next one
still ahead.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID

from attrs import define, frozen

from domain.errors import InvalidSchedule
from domain.task import SCHEDULE_KEY_PREFIX
from domain.values import DEFAULT_QUEUE, MAX_OWNER_LENGTH, JsonValue

SCHEDULE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
MAX_CRON_LENGTH = 200
MAX_TIMEZONE_LENGTH = 64
MAX_EXPIRES_AFTER_SECONDS = 366 * 24 * 3600


@frozen
class TaskTemplate:
    """What each task of a schedule is: as a submit request would describe it (``None``
    takes the deployment's default at the time of each submit)."""

    kind: str
    payload: JsonValue
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    callback_url: str | None = None
    expires_after_seconds: float | None = None
    """Each task expires this long after its occurrence (``Task.expires_at``): one that no
    attempt has started by then fails as expired instead of running late."""
    queue: str = DEFAULT_QUEUE
    """The queue of each task (``Task.queue``)."""


@define(eq=False)
class Schedule:
    id: UUID
    owner: str
    cron: str
    timezone: str
    task: TaskTemplate
    next_run_at: datetime
    """The next occurrence, in UTC; while paused, the one it had when paused."""
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    """Unique among its owner's schedules when given."""
    paused: bool = False
    last_run_at: datetime | None = None
    """The occurrence of the latest task submitted."""
    last_task_id: UUID | None = None

    @classmethod
    def create(
        cls,
        *,
        id: UUID,
        owner: str,
        cron: str,
        timezone: str,
        task: TaskTemplate,
        first_run_at: datetime,
        now: datetime,
        name: str | None = None,
        paused: bool = False,
    ) -> Schedule:
        """A new schedule, first due at ``first_run_at`` (the first occurrence of ``cron``
        after ``now``, which the caller computes: the domain reads no calendar)."""
        if not 0 < len(owner) <= MAX_OWNER_LENGTH:
            raise InvalidSchedule(f"a schedule needs an owner of 1-{MAX_OWNER_LENGTH} characters")
        if not cron.strip() or len(cron) > MAX_CRON_LENGTH:
            raise InvalidSchedule(f"cron must be 1-{MAX_CRON_LENGTH} characters")
        if not timezone or len(timezone) > MAX_TIMEZONE_LENGTH:
            raise InvalidSchedule(f"timezone must be 1-{MAX_TIMEZONE_LENGTH} characters")
        if name is not None and not SCHEDULE_NAME_PATTERN.fullmatch(name):
            raise InvalidSchedule(
                f"name {name!r} must be 1-100 characters of a-z, 0-9, '_', '.', '-' "
                "starting with a letter or a digit"
            )
        if first_run_at <= now:
            raise InvalidSchedule("the first run of a schedule lies ahead")
        expires_after = task.expires_after_seconds
        if expires_after is not None and not 0 < expires_after <= MAX_EXPIRES_AFTER_SECONDS:
            raise InvalidSchedule(
                f"expires_after_seconds must be over 0 and at most {MAX_EXPIRES_AFTER_SECONDS:,}"
            )
        return cls(
            id=id,
            owner=owner,
            cron=cron,
            timezone=timezone,
            task=task,
            next_run_at=first_run_at.astimezone(UTC),
            created_at=now,
            updated_at=now,
            name=name,
            paused=paused,
        )

    def occurrence_expires_at(self) -> datetime | None:
        """When the task of the next occurrence expires, if its template says."""
        if self.task.expires_after_seconds is None:
            return None
        return self.next_run_at + timedelta(seconds=self.task.expires_after_seconds)

    def occurrence_key(self) -> str:
        """The idempotency key of the task of the next occurrence."""
        occurrence = self.next_run_at.astimezone(UTC)
        return f"{SCHEDULE_KEY_PREFIX}{self.id}:{occurrence:%Y%m%dT%H%M%SZ}"
