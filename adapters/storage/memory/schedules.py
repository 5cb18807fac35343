"""The schedules of a ``MemoryStorage``; each call applies at once."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from application.errors import ScheduleNameTaken
from domain.schedule import Schedule

if TYPE_CHECKING:
    from adapters.storage.memory.storage import MemoryStorage


class MemorySchedules:
    def __init__(self, storage: MemoryStorage) -> None:
        self._stored = storage.schedules_by_id

    async def add(self, schedule: Schedule) -> None:
        if schedule.name is not None and any(
            other.owner == schedule.owner and other.name == schedule.name
            for other in self._stored.values()
        ):
            raise ScheduleNameTaken(schedule.name)
        self._stored[schedule.id] = copy.copy(schedule)

    async def get(self, owner: str, schedule_id: UUID) -> Schedule | None:
        found = self._owned(owner, schedule_id)
        return copy.copy(found) if found is not None else None

    async def list(self, owner: str, limit: int, before: UUID | None = None) -> Sequence[Schedule]:
        owned = sorted(
            (
                schedule
                for schedule in self._stored.values()
                if schedule.owner == owner and (before is None or schedule.id < before)
            ),
            key=lambda schedule: schedule.id,
            reverse=True,
        )
        return [copy.copy(schedule) for schedule in owned[:limit]]

    async def count(self, owner: str) -> int:
        return sum(schedule.owner == owner for schedule in self._stored.values())

    async def delete(self, owner: str, schedule_id: UUID) -> bool:
        if self._owned(owner, schedule_id) is None:
            return False
        del self._stored[schedule_id]
        return True

    async def pause(self, owner: str, schedule_id: UUID, now: datetime) -> Schedule | None:
        found = self._owned(owner, schedule_id)
        if found is None:
            return None
        if not found.paused:
            found.paused, found.updated_at = True, now
        return copy.copy(found)

    async def resume(
        self, owner: str, schedule_id: UUID, next_run_at: datetime, now: datetime
    ) -> Schedule | None:
        found = self._owned(owner, schedule_id)
        if found is None:
            return None
        if found.paused:
            found.paused, found.next_run_at, found.updated_at = False, next_run_at, now
        return copy.copy(found)

    async def due(self, now: datetime, limit: int) -> Sequence[Schedule]:
        due = [s for s in self._stored.values() if not s.paused and s.next_run_at <= now]
        due.sort(key=lambda schedule: (schedule.next_run_at, schedule.id))
        return [copy.copy(schedule) for schedule in due[:limit]]

    async def ran(
        self,
        schedule_id: UUID,
        occurrence: datetime,
        next_run_at: datetime,
        task_id: UUID | None,
        now: datetime,
    ) -> bool:
        found = self._stored.get(schedule_id)
        if found is None or found.next_run_at != occurrence:
            return False
        found.last_run_at, found.last_task_id = occurrence, task_id
        found.next_run_at, found.updated_at = next_run_at, now
        return True

    def _owned(self, owner: str, schedule_id: UUID) -> Schedule | None:
        found = self._stored.get(schedule_id)
        return found if found is not None and found.owner == owner else None
