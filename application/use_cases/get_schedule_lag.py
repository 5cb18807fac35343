"""How late the schedules are: what an operator of recurring tasks watches."""

from __future__ import annotations

from datetime import timedelta

from application.ports.clock import Clock
from application.ports.schedules import ScheduleRepository


class GetScheduleLagHandler:
    """How long ago the earliest occurrence still waiting for its task came, of the
    schedules of every owner that are not paused; ``None`` when none is due. A sweep
    keeps it under ``TASKPORT_SWEEP_INTERVAL_SECONDS``: more says the sweeps fall behind,
    or none runs."""

    def __init__(self, schedules: ScheduleRepository, clock: Clock) -> None:
        self._schedules = schedules
        self._clock = clock

    async def __call__(self) -> timedelta | None:
        now = self._clock.now()
        due = await self._schedules.due(now, 1)
        return max(now - due[0].next_run_at, timedelta(0)) if due else None
