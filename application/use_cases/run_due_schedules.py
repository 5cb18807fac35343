"""Submit the task of every schedule that came due."""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

from attrs import frozen

from application.errors import IdempotencyKeyReused, InvalidPayload, UnknownKind, UnknownQueue
from application.ports.clock import Clock
from application.ports.schedule_listener import ScheduleListener, SkipReason
from application.ports.schedules import Recurrence, ScheduleRepository
from application.use_cases.create_schedule import task_of
from application.use_cases.submit_task import SubmitTaskHandler
from domain.errors import DomainError, InvalidSchedule
from domain.schedule import Schedule

logger = logging.getLogger("taskport.schedules")

SCHEDULE_BATCH = 100


@frozen
class _Occurrence:
    """What the submit of an occurrence's task came to: the task, or why there is none."""

    task_id: UUID | None
    skipped: SkipReason | None = None


class RunDueSchedulesHandler:
    """One sweep: submits the task of up to ``limit`` due schedules and returns how many
    schedules it moved on.

    Safe to run in several processes at once, and to stop anywhere: the task of an
    occurrence carries the occurrence's idempotency key, so a second submit of it answers
    with the first task, and the schedule moves on only from the occurrence it was read at.
    Each schedule is read again just before its task is submitted: one paused, deleted
    or moved on by another sweep since the batch was read submits nothing.
    A task that can no longer be submitted (its kind was removed, its payload no longer
    passes) is logged, and the schedule moves on to its next occurrence; a schedule whose
    time can no longer be read is paused. ``listener`` hears of each task created and each
    occurrence skipped.
    """

    def __init__(
        self,
        schedules: ScheduleRepository,
        submit: SubmitTaskHandler,
        recurrence: Recurrence,
        clock: Clock,
        listener: ScheduleListener,
    ) -> None:
        self._schedules = schedules
        self._submit = submit
        self._recurrence = recurrence
        self._clock = clock
        self._listener = listener

    async def __call__(self, limit: int = SCHEDULE_BATCH) -> int:
        now = self._clock.now()
        moved = 0
        for schedule in await self._schedules.due(now, limit):
            if not await self._still_due(schedule):
                continue
            occurrence = await self._submitted(schedule)
            try:
                next_run_at = self._recurrence.next_after(schedule.cron, schedule.timezone, now)
            except InvalidSchedule as exc:  # its time zone left the system's database
                logger.error("schedule %s paused: %s", schedule.id, exc)
                await self._schedules.pause(schedule.owner, schedule.id, now)
                continue
            if await self._schedules.ran(
                schedule.id, schedule.next_run_at, next_run_at, occurrence.task_id, now
            ):
                moved += 1
                if occurrence.skipped is not None:  # counted by the sweep that moved it on
                    self._listener.occurrence_skipped(schedule.task.kind, occurrence.skipped)
        return moved

    async def _still_due(self, schedule: Schedule) -> bool:
        current = await self._schedules.get(schedule.owner, schedule.id)
        return (
            current is not None
            and not current.paused
            and current.next_run_at == schedule.next_run_at
        )

    async def _submitted(self, schedule: Schedule) -> _Occurrence:
        expires_at = schedule.occurrence_expires_at()
        if self._expired(expires_at):
            logger.warning(
                "schedule %s: no task for %s: it expired at %s, before a sweep came",
                schedule.id,
                schedule.next_run_at,
                expires_at,
            )
            return _Occurrence(None, "expired")
        command = task_of(
            schedule.owner, schedule.task, schedule.occurrence_key(), schedule.id, expires_at
        )
        try:
            submitted = await self._submit(command)
        except IdempotencyKeyReused as exc:  # submitted by an earlier form of the schedule
            return _Occurrence(exc.task_id)
        except (UnknownKind, UnknownQueue, InvalidPayload, DomainError) as exc:
            logger.warning(
                "schedule %s: no task for %s: %s", schedule.id, schedule.next_run_at, exc
            )
            # Expired between the look above and the submit's own reading of the clock.
            reason = "expired" if self._expired(expires_at) else _skip_reason(exc)
            return _Occurrence(None, reason)
        if submitted.created:  # not a repeat of a racing sweep's submit
            self._listener.task_submitted(command.kind)
        return _Occurrence(submitted.task.id)

    def _expired(self, expires_at: datetime | None) -> bool:
        return expires_at is not None and expires_at <= self._clock.now()


def _skip_reason(error: Exception) -> SkipReason:
    if isinstance(error, UnknownKind):
        return "unknown_kind"
    if isinstance(error, UnknownQueue):
        return "unknown_queue"
    if isinstance(error, InvalidPayload):
        return "invalid_payload"
    return "invalid_task"
