"""The deployment's statistics for its metrics, counted by one process at a time."""

from __future__ import annotations

from datetime import timedelta

from attrs import frozen

from application.ports.clock import Clock
from application.ports.leases import Leases
from application.use_cases.get_schedule_lag import GetScheduleLagHandler
from application.use_cases.get_stats import GetStatsHandler, Stats

STATISTICS_LEASE = "statistics"


@frozen
class DeploymentStats:
    stats: Stats
    """Every owner's tasks."""
    schedule_lag: timedelta | None


class ObserveDeploymentHandler:
    """Counts every owner's tasks and reads the schedule lag while this process holds the
    statistics lease, which each call takes or extends for ``hold_for``; ``None`` while
    another process holds it. The count reads every stored task: done by one process of
    the deployment, it costs the database the same however many processes there are.
    ``hand_over`` releases the lease of a process that stops, for another one to take at
    its next call rather than once ``hold_for`` has passed."""

    def __init__(
        self,
        leases: Leases,
        holder: str,
        clock: Clock,
        get_stats: GetStatsHandler,
        get_schedule_lag: GetScheduleLagHandler,
        hold_for: timedelta,
    ) -> None:
        self._leases = leases
        self._holder = holder
        self._clock = clock
        self._get_stats = get_stats
        self._get_schedule_lag = get_schedule_lag
        self._hold_for = hold_for

    async def __call__(self) -> DeploymentStats | None:
        now = self._clock.now()
        if not await self._leases.take(STATISTICS_LEASE, self._holder, now, now + self._hold_for):
            return None
        return DeploymentStats(await self._get_stats(None), await self._get_schedule_lag())

    async def hand_over(self) -> None:
        await self._leases.release(STATISTICS_LEASE, self._holder)
