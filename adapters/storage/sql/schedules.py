"""The schedules table; each call is a transaction of its own (one statement each, but
``pause`` and ``resume``, which read the schedule back after changing it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Row, and_, delete, exc, func, insert, select, update
from sqlalchemy.sql import ColumnElement

from adapters.storage.sql.schema import schedules
from application.errors import ScheduleNameTaken
from domain.schedule import Schedule, TaskTemplate

if TYPE_CHECKING:
    from adapters.storage.sql.storage import SqlStorage


class SqlSchedules:
    def __init__(self, storage: SqlStorage) -> None:
        self._storage = storage

    async def add(self, schedule: Schedule) -> None:
        try:
            await self._storage.write_alone(insert(schedules).values(_to_row(schedule)))
        except exc.IntegrityError:
            raise ScheduleNameTaken(schedule.name or "") from None

    async def get(self, owner: str, schedule_id: UUID) -> Schedule | None:
        rows = await self._storage.read_alone(select(schedules).where(_owned(owner, schedule_id)))
        return _from_row(rows[0]) if rows else None

    async def list(self, owner: str, limit: int, before: UUID | None = None) -> Sequence[Schedule]:
        statement = select(schedules).where(schedules.c.owner == owner)
        if before is not None:
            statement = statement.where(schedules.c.id < before)
        rows = await self._storage.read_alone(
            statement.order_by(schedules.c.id.desc()).limit(limit)
        )
        return [_from_row(row) for row in rows]

    async def count(self, owner: str) -> int:
        statement = select(func.count()).select_from(schedules).where(schedules.c.owner == owner)
        rows = await self._storage.read_alone(statement)
        return int(rows[0][0])

    async def delete(self, owner: str, schedule_id: UUID) -> bool:
        return (
            await self._storage.write_alone(delete(schedules).where(_owned(owner, schedule_id))) > 0
        )

    async def pause(self, owner: str, schedule_id: UUID, now: datetime) -> Schedule | None:
        await self._storage.write_alone(
            update(schedules)
            .where(_owned(owner, schedule_id), schedules.c.paused.is_(False))
            .values(paused=True, updated_at=now)
        )
        return await self.get(owner, schedule_id)

    async def resume(
        self, owner: str, schedule_id: UUID, next_run_at: datetime, now: datetime
    ) -> Schedule | None:
        await self._storage.write_alone(
            update(schedules)
            .where(_owned(owner, schedule_id), schedules.c.paused.is_(True))
            .values(paused=False, next_run_at=next_run_at, updated_at=now)
        )
        return await self.get(owner, schedule_id)

    async def due(self, now: datetime, limit: int) -> Sequence[Schedule]:
        statement = (
            select(schedules)
            .where(schedules.c.paused.is_(False), schedules.c.next_run_at <= now)
            .order_by(schedules.c.next_run_at, schedules.c.id)
            .limit(limit)
        )
        return [_from_row(row) for row in await self._storage.read_alone(statement)]

    async def ran(
        self,
        schedule_id: UUID,
        occurrence: datetime,
        next_run_at: datetime,
        task_id: UUID | None,
        now: datetime,
    ) -> bool:
        moved = await self._storage.write_alone(
            update(schedules)
            .where(schedules.c.id == schedule_id, schedules.c.next_run_at == occurrence)
            .values(
                last_run_at=occurrence,
                last_task_id=task_id,
                next_run_at=next_run_at,
                updated_at=now,
            )
        )
        return moved > 0


def _owned(owner: str, schedule_id: UUID) -> ColumnElement[bool]:
    return and_(schedules.c.id == schedule_id, schedules.c.owner == owner)


def _to_row(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "owner": schedule.owner,
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "kind": schedule.task.kind,
        "payload": schedule.task.payload,
        "max_attempts": schedule.task.max_attempts,
        "timeout_seconds": schedule.task.timeout_seconds,
        "callback_url": schedule.task.callback_url,
        "expires_after_seconds": schedule.task.expires_after_seconds,
        "queue": schedule.task.queue,
        "paused": schedule.paused,
        "next_run_at": schedule.next_run_at,
        "last_run_at": schedule.last_run_at,
        "last_task_id": schedule.last_task_id,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
    }


def _from_row(row: Row[Any]) -> Schedule:
    return Schedule(
        id=row.id,
        owner=row.owner,
        name=row.name,
        cron=row.cron,
        timezone=row.timezone,
        task=TaskTemplate(
            kind=row.kind,
            payload=row.payload,
            max_attempts=row.max_attempts,
            timeout_seconds=row.timeout_seconds,
            callback_url=row.callback_url,
            expires_after_seconds=row.expires_after_seconds,
            queue=row.queue,
        ),
        paused=row.paused,
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        last_task_id=row.last_task_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
