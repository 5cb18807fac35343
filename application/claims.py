"""Claims of delivered tasks: the version-checked QUEUED -> RUNNING transition a run
commits before its handler starts, so that a duplicate delivery finds the task RUNNING (or
finished) and does nothing.

A claim records ``worker_id``, this worker's id in the worker registry: should the worker
stop heartbeating, the recovery sweep takes the attempt back before its lease ends.

The claims of concurrent runs are written together (``Batcher``): one unit of work reads
the claimed tasks at once and writes every claim. A batch that meets a conflict (a
duplicate delivery, a cancel request) is written again one task at a time; a storage that
wrote part of the batch before the conflict (MongoDB) is read back, and a task found as
this run wrote it counts as written.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from uuid import UUID

from application.batching import Batcher, Request
from application.errors import ConcurrencyConflict
from application.ports.clock import Clock
from application.ports.unit_of_work import UnitOfWorkFactory
from application.recorder import TaskRecorder
from application.run_results import (
    BATCHES,
    CONFLICT_RETRIES,
    MAX_BATCH,
    Outcome,
    RunResult,
    Unwritten,
    written,
)
from domain.task import Task
from domain.values import TaskError, TaskStatus


class TaskClaims:
    """Claims the tasks this process's runs were delivered, and counts those running here.

    ``claim`` returns the claimed task, or what the run came to without one; a run that
    got its task calls ``finished`` once it is done with it. A run cancelled while its claim
    is being written hands a task the claim started back through ``hand_back``.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        recorder: TaskRecorder,
        clock: Clock,
        worker_id: str | None,
        hand_back: Callable[[Task], Awaitable[None]],
    ) -> None:
        self._uow = uow
        self._recorder = recorder
        self._clock = clock
        self._worker_id = worker_id
        self._hand_back = hand_back
        self._running: collections.Counter[UUID] = collections.Counter()
        """The tasks whose handlers run in this process: each counted once per claim of it
        made here that committed or is committing (two claims of one task, racing in two
        batches, are both counted until the loser's write fails)."""
        self._batches: Batcher[UUID, Task | RunResult | Unwritten] = Batcher(
            self._claim_batch, MAX_BATCH, BATCHES
        )

    async def claim(self, task_id: UUID) -> Task | RunResult:
        claiming = self._batches.put(task_id)
        try:
            # Shielded: a claim the batch commits after all is handed back, not dropped.
            claimed = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            await self._hand_back_claimed(claiming)
            raise
        if isinstance(claimed, Unwritten):
            return await self._claim_alone(task_id, claimed)
        return claimed

    def finished(self, task_id: UUID) -> None:
        """The run of a claimed task is over: it no longer counts as running here."""
        self._running[task_id] -= 1
        if self._running[task_id] <= 0:
            del self._running[task_id]

    async def _hand_back_claimed(
        self, claiming: asyncio.Future[Task | RunResult | Unwritten]
    ) -> None:
        """The worker is shutting down while this delivery's claim is being written: a task
        the claim started is handed back at once rather than left RUNNING, and counted as
        running here, until its lease ends."""
        try:
            claimed = await claiming
        except (Exception, asyncio.CancelledError):
            return  # not claimed, or the batch was cancelled with the loop
        if not isinstance(claimed, Task):
            return
        self.finished(claimed.id)
        await self._hand_back(claimed)

    async def _claim_batch(
        self, requests: Sequence[Request[UUID]]
    ) -> list[Task | RunResult | Unwritten]:
        """Claims the tasks of ``requests`` in one unit of work."""
        async with self._uow() as uow:
            found = await uow.tasks.get_many({request.item for request in requests})
            now = self._clock.now()
            results: list[Task | RunResult | Unwritten] = []
            changed: list[tuple[int, Request[UUID], Task]] = []
            seen: set[UUID] = set()
            for request in requests:
                if request.item in seen:
                    # A duplicate delivery in the same batch: it looks once this one is done.
                    results.append(Unwritten())
                    continue
                seen.add(request.item)
                decided = self._decide(found.get(request.item), now)
                if isinstance(decided, Task):
                    changed.append((len(results), request, decided))
                results.append(decided)
            changes = [
                request.context.run(self._recorder.record, saved=[task])
                for _, request, task in changed
            ]
            # Claims alone need no flush before their handlers start: a claim the database
            # loses in a crash leaves the task QUEUED, its delivery not yet acked.
            only_claims = all(task.status is TaskStatus.RUNNING for _, _, task in changed)
            if changes:
                try:
                    with self._counted_as_running(task for _, _, task in changed):
                        await self._recorder.write(uow, changes, durable=not only_claims)
                except ConcurrencyConflict:
                    for (index, _, task), change in zip(changed, changes, strict=True):
                        results[index] = Unwritten(task, change)
                    return [
                        result if isinstance(result, Unwritten) else Unwritten()
                        for result in results
                    ]
        for (_, request, _), change in zip(changed, changes, strict=True):
            request.context.run(self._recorder.announce, change)
        return [_claimed(result) if isinstance(result, Task) else result for result in results]

    async def _claim_alone(self, task_id: UUID, unwritten: Unwritten) -> Task | RunResult:
        for _ in range(CONFLICT_RETRIES):
            async with self._uow() as uow:
                task = await uow.tasks.get(task_id)
                if task is not None and (change := written(task, unwritten)):
                    self._recorder.announce(change)
                    with self._counted_as_running([task]):  # the batch wrote it after all
                        return _claimed(task)
                decided = self._decide(task, self._clock.now())
                if isinstance(decided, RunResult):
                    return decided
                try:
                    with self._counted_as_running([decided]):
                        await self._recorder.commit(uow, saved=[decided])
                except ConcurrencyConflict:
                    continue
                return _claimed(decided)
        return RunResult(Outcome.BUSY, None, timedelta(seconds=1))

    def _decide(self, task: Task | None, now: datetime) -> Task | RunResult:
        """What a delivery of ``task`` does to it: starts it (or fails the attempt a lost
        worker left, or fails the task that expired waiting), to be written, or nothing."""
        if task is None:
            return RunResult(Outcome.UNKNOWN_TASK)
        if task.lease_expired(now) or self._cut_short(task):
            # The worker that held this attempt stopped answering, or this worker holds it
            # but runs no handler for it: the attempt failed.
            task.fail(now, TaskError("AttemptLost", f"attempt {task.attempts} was lost"))
        elif task.has_expired(now):
            task.expire(now)
        elif task.status is TaskStatus.RUNNING:
            assert task.lease_expires_at is not None
            return RunResult(Outcome.BUSY, task.status, task.lease_expires_at - now)
        elif task.status is not TaskStatus.QUEUED or task.attempts_left <= 0:
            return RunResult(Outcome.NOTHING_TO_DO, task.status)
        else:
            task.start(now, self._worker_id)
        return task

    @contextlib.contextmanager
    def _counted_as_running(self, claimed: Iterable[Task]) -> Iterator[None]:
        """Counts the tasks of ``claimed`` that were started as running here (until their
        run calls ``finished``) from before their claim commits, and no longer if it fails:
        a concurrent claim that reads them committed must not take them for attempts this
        worker dropped."""
        started = [task.id for task in claimed if task.status is TaskStatus.RUNNING]
        self._running.update(started)
        try:
            yield
        except BaseException:
            for task_id in started:
                self.finished(task_id)
            raise

    def _cut_short(self, task: Task) -> bool:
        """Whether ``task`` runs an attempt this worker claimed but no longer runs: its
        outcome was never written (storage went away), or the claim committed unseen."""
        return (
            task.status is TaskStatus.RUNNING
            and self._worker_id is not None
            and task.worker_id == self._worker_id
            and task.id not in self._running
        )


def _claimed(task: Task) -> Task | RunResult:
    """The claimed task, or, for a task whose lost attempt was failed instead, the result."""
    if task.status is not TaskStatus.RUNNING:
        return RunResult(Outcome.RAN, task.status)
    return task
