"""An owner's schedules: read one, list them, pause, resume or delete one."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from uuid import UUID

from attrs import frozen

from application.errors import ScheduleNotFound
from application.json_values import json_size
from application.paging import MAX_PAGE_BYTES, bounded_page
from application.ports.clock import Clock
from application.ports.schedules import Recurrence, ScheduleRepository
from domain.schedule import Schedule

MAX_SCHEDULE_PAGE = 1000


@frozen
class SchedulePage:
    items: Sequence[Schedule]
    next_before: UUID | None
    """Where the next page starts; ``None`` on the last page."""


class ManageSchedules:
    """Every method raises ``ScheduleNotFound`` for a schedule that does not exist or that
    another owner has (the two are indistinguishable on purpose)."""

    def __init__(
        self,
        schedules: ScheduleRepository,
        recurrence: Recurrence,
        clock: Clock,
        max_page_bytes: int = MAX_PAGE_BYTES,
    ) -> None:
        self._max_page_bytes = max_page_bytes
        self._schedules = schedules
        self._recurrence = recurrence
        self._clock = clock

    async def get(self, owner: str, schedule_id: UUID) -> Schedule:
        return _found(await self._schedules.get(owner, schedule_id), schedule_id)

    async def list(self, owner: str, limit: int, before: UUID | None = None) -> SchedulePage:
        """At most ``limit`` schedules, fewer where their payloads pass ``max_page_bytes``
        of JSON (one at least, however large)."""
        if not 1 <= limit <= MAX_SCHEDULE_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_SCHEDULE_PAGE}")

        def read(count: int, after: UUID | None) -> Awaitable[Sequence[Schedule]]:
            return self._schedules.list(owner, count, after or before)

        items, next_before = await bounded_page(
            read, limit, lambda schedule: json_size(schedule.task.payload), self._max_page_bytes
        )
        return SchedulePage(items, next_before)

    async def pause(self, owner: str, schedule_id: UUID) -> Schedule:
        """No task is submitted for it until it is resumed."""
        paused = await self._schedules.pause(owner, schedule_id, self._clock.now())
        return _found(paused, schedule_id)

    async def resume(self, owner: str, schedule_id: UUID) -> Schedule:
        """A paused schedule is next due at its first occurrence from now on: the ones
        passed while it was paused are skipped."""
        schedule = await self.get(owner, schedule_id)
        now = self._clock.now()
        next_run_at = self._recurrence.next_after(schedule.cron, schedule.timezone, now)
        resumed = await self._schedules.resume(owner, schedule_id, next_run_at, now)
        return _found(resumed, schedule_id)

    async def delete(self, owner: str, schedule_id: UUID) -> None:
        """Tasks it submitted already are kept."""
        if not await self._schedules.delete(owner, schedule_id):
            raise ScheduleNotFound(schedule_id)


def _found(schedule: Schedule | None, schedule_id: UUID) -> Schedule:
    if schedule is None:
        raise ScheduleNotFound(schedule_id)
    return schedule
