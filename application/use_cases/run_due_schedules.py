"""Submit the task of every schedule that came due."""

from __future__ import annotations

import logging
from uuid import UUID

from application.errors import IdempotencyKeyReused, InvalidPayload, UnknownKind
from application.ports.clock import Clock
from application.ports.schedules import Recurrence, ScheduleRepository
from application.use_cases.create_schedule import task_of
from application.use_cases.submit_task import SubmitTaskHandler
from domain.errors import DomainError, InvalidSchedule
from domain.schedule import Schedule

logger = logging.getLogger("taskport.schedules")

SCHEDULE_BATCH = 100


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
    time can no longer be read is paused.
    """

    def __init__(
        self,
        schedules: ScheduleRepository,
        submit: SubmitTaskHandler,
        recurrence: Recurrence,
        clock: Clock,
    ) -> None:
        self._schedules = schedules
        self._submit = submit
        self._recurrence = recurrence
        self._clock = clock

    async def __call__(self, limit: int = SCHEDULE_BATCH) -> int:
        now = self._clock.now()
        moved = 0
        for schedule in await self._schedules.due(now, limit):
            if not await self._still_due(schedule):
                continue
            task_id = await self._submitted(schedule)
            try:
                next_run_at = self._recurrence.next_after(schedule.cron, schedule.timezone, now)
            except InvalidSchedule as exc:  # its time zone left the system's database
                logger.error("schedule %s paused: %s", schedule.id, exc)
                await self._schedules.pause(schedule.owner, schedule.id, now)
                continue
            if await self._schedules.ran(
                schedule.id, schedule.next_run_at, next_run_at, task_id, now
            ):
                moved += 1
        return moved

    async def _still_due(self, schedule: Schedule) -> bool:
        current = await self._schedules.get(schedule.owner, schedule.id)
        return (
            current is not None
            and not current.paused
            and current.next_run_at == schedule.next_run_at
        )

    async def _submitted(self, schedule: Schedule) -> UUID | None:
        command = task_of(schedule.owner, schedule.task, schedule.occurrence_key(), schedule.id)
        try:
            return (await self._submit(command)).task.id
        except IdempotencyKeyReused as exc:  # submitted by an earlier form of the schedule
            return exc.task_id
        except (UnknownKind, InvalidPayload, DomainError) as exc:
            logger.warning(
                "schedule %s: no task for %s: %s", schedule.id, schedule.next_run_at, exc
            )
            return None
