"""What an operator checks first: how many tasks in each state, and how old the queue is."""

from __future__ import annotations

from datetime import timedelta

from attrs import field, frozen

from application.ports.clock import Clock
from application.ports.task_repository import TaskStats
from application.ports.unit_of_work import UnitOfWorkFactory


@frozen
class Stats:
    tasks: TaskStats
    oldest_queued_age: timedelta | None
    outbox_backlog: int
    """Messages committed but not yet marked sent (the relay marks published ones about
    20 ms after their publish), across every owner."""
    oldest_queued_age_by_queue: dict[str, timedelta] = field(factory=dict)
    """Each queue holding a QUEUED task: how long its oldest has waited since it was due."""


class GetStatsHandler:
    """Counts the tasks of ``owner`` (every owner with ``None``) and reads the outbox backlog."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def __call__(self, owner: str | None) -> Stats:
        async with self._uow() as uow:
            tasks = await uow.tasks.stats(owner)
            backlog = await uow.outbox.backlog()
        now = self._clock.now()
        oldest = tasks.oldest_queued_at
        by_queue = {
            queue: max(now - since, timedelta(0))
            for queue, since in sorted(tasks.oldest_queued_by_queue.items())
        }
        age = max(now - oldest, timedelta(0)) if oldest is not None else None
        return Stats(tasks, age, backlog, by_queue)
