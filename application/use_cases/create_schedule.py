"""Create a schedule: check what its tasks will be and when, store it."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from attrs import evolve, frozen

from application.errors import TooManySchedules
from application.ports.clock import Clock
from application.ports.ids import IdGenerator
from application.ports.schedules import Recurrence, ScheduleRepository
from application.submissions import NewTasks, SubmitTask
from domain.schedule import Schedule, TaskTemplate


@frozen
class CreateSchedule:
    owner: str
    cron: str
    task: TaskTemplate
    timezone: str = "UTC"
    name: str | None = None
    paused: bool = False


def task_of(
    owner: str,
    template: TaskTemplate,
    key: str | None = None,
    schedule_id: UUID | None = None,
    expires_at: datetime | None = None,
) -> SubmitTask:
    """The submit request of one of a schedule's tasks."""
    return SubmitTask(
        owner=owner,
        kind=template.kind,
        payload=template.payload,
        max_attempts=template.max_attempts,
        timeout_seconds=template.timeout_seconds,
        callback_url=template.callback_url,
        queue=template.queue,
        idempotency_key=key,
        schedule_id=schedule_id,
        expires_at=expires_at,
    )


MAX_SCHEDULES_PER_OWNER = 1000


class CreateScheduleHandler:
    """Raises what a submit of its task would (``UnknownKind``, ``UnknownQueue``,
    ``InvalidPayload``, ``InvalidTask``), ``InvalidSchedule`` for a cron expression or time
    zone ``Recurrence`` cannot read, ``ScheduleNameTaken``, and ``TooManySchedules`` past
    ``max_per_owner`` (creates racing at the limit may pass it by a few)."""

    def __init__(
        self,
        schedules: ScheduleRepository,
        new_tasks: NewTasks,
        recurrence: Recurrence,
        clock: Clock,
        ids: IdGenerator,
        max_per_owner: int = MAX_SCHEDULES_PER_OWNER,
    ) -> None:
        self._max_per_owner = max_per_owner
        self._schedules = schedules
        self._new_tasks = new_tasks
        self._recurrence = recurrence
        self._clock = clock
        self._ids = ids

    async def __call__(self, command: CreateSchedule) -> Schedule:
        # Checked as a submit checks it, so that each of its tasks will be accepted.
        checked = self._new_tasks.build(task_of(command.owner, command.task))
        if await self._schedules.count(command.owner) >= self._max_per_owner:
            raise TooManySchedules(self._max_per_owner)
        now = self._clock.now()
        schedule = Schedule.create(
            id=self._ids.new_id(),
            owner=command.owner,
            cron=command.cron,
            timezone=command.timezone,
            task=evolve(command.task, payload=checked.payload),
            first_run_at=self._recurrence.next_after(command.cron, command.timezone, now),
            now=now,
            name=command.name,
            paused=command.paused,
        )
        await self._schedules.add(schedule)
        return schedule
