from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.schedule import Schedule


class ScheduleRepository(Protocol):
    """The schedules. Each call is a transaction of its own, outside any unit of work: a
    schedule's task is submitted by the task use cases, and the schedule then notes it
    (``ran``); the task's idempotency key (``Schedule.occurrence_key``) makes the pair safe
    to repeat.

    - ``add`` raises ``ScheduleNameTaken`` when the owner has a schedule of that name.
    - ``get`` is scoped to an owner: another owner's schedule is ``None``.
    - ``list`` pages by id, newest first, after the schedule ``before`` when given.
    - ``count`` is how many schedules the owner has.
    - ``delete`` returns whether the owner's schedule existed.
    - ``pause`` and ``resume`` change the owner's schedule and return it as it is then
      (``None`` when there is none). ``resume`` of a paused schedule makes it next due at
      ``next_run_at``; of a running one it changes nothing.
    - ``due`` returns up to ``limit`` schedules not paused whose ``next_run_at`` is at or
      before ``now``, earliest first. Concurrent sweeps may receive the same schedules.
    - ``ran`` notes that the task ``task_id`` (``None`` when none could be submitted) was
      submitted for the occurrence ``occurrence`` and makes the schedule next due at
      ``next_run_at``; only while the schedule is still next due at ``occurrence`` (it
      returns whether it was), so of sweeps racing on one occurrence one moves it on.
    A storage that cannot be reached raises ``StorageUnavailable``.
    """

    async def add(self, schedule: Schedule) -> None: ...

    async def get(self, owner: str, schedule_id: UUID) -> Schedule | None: ...

    async def list(
        self, owner: str, limit: int, before: UUID | None = None
    ) -> Sequence[Schedule]: ...

    async def count(self, owner: str) -> int: ...

    async def delete(self, owner: str, schedule_id: UUID) -> bool: ...

    async def pause(self, owner: str, schedule_id: UUID, now: datetime) -> Schedule | None: ...

    async def resume(
        self, owner: str, schedule_id: UUID, next_run_at: datetime, now: datetime
    ) -> Schedule | None: ...

    async def due(self, now: datetime, limit: int) -> Sequence[Schedule]: ...

    async def ran(
        self,
        schedule_id: UUID,
        occurrence: datetime,
        next_run_at: datetime,
        task_id: UUID | None,
        now: datetime,
    ) -> bool: ...


class Recurrence(Protocol):
    """Cron expressions: five fields (minute, hour, day of month, month, day of week) or
    ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``, read in an IANA time
    zone (``Europe/Paris``).

    ``next_after`` returns the first time after ``after`` (strictly) that ``cron`` names,
    in UTC; it raises ``InvalidSchedule`` for an expression or a time zone it cannot read.
    Daylight saving as Debian's cron reads it: a fixed local time (no ``*`` in the minute
    and hour fields) skipped by a change runs at the first minute after it, and one
    repeated by a change runs once; an expression with a ``*`` in its minute or hour field
    follows the clock (its times skipped do not run, those repeated run in both passes).
    """

    def next_after(self, cron: str, timezone: str, after: datetime) -> datetime: ...
