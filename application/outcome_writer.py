"""Writing how a claimed task's attempt ended: only if the task is still in the attempt
its run claimed, so that a result is written once.

The results of concurrent runs are written together (``Batcher``), in one unit of work,
over the versions their claims wrote, without reading the tasks again. A batch that meets
a conflict (a cancel request, a progress write or a takeover moved a version on) is
written again one task at a time, each read first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from attrs import frozen

from application.attempts import AttemptOutcome, Failed, Released, Succeeded, apply_outcome
from application.batching import Batcher, Request
from application.errors import ConcurrencyConflict, Unavailable
from application.outage_log import OutageLog
from application.ports.clock import Clock
from application.ports.handlers import ProgressUpdate
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
from domain.values import TaskStatus

logger = logging.getLogger("taskport.worker")

WRITE_RETRY_DELAY = timedelta(seconds=0.5)
"""The first wait before writing an outcome again while storage is unavailable; each
next wait is twice as long, up to ``WRITE_RETRY_MAX_DELAY``."""
WRITE_RETRY_MAX_DELAY = timedelta(seconds=30)


@frozen
class _Outcome:
    claimed: Task
    outcome: Succeeded | Failed
    progress: ProgressUpdate | None


class OutcomeWriter:
    """Records the outcomes of the attempts this process's runs claimed."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        recorder: TaskRecorder,
        clock: Clock,
        write_retry_delay: timedelta = WRITE_RETRY_DELAY,
    ) -> None:
        self._uow = uow
        self._recorder = recorder
        self._clock = clock
        self._write_retry_delay = write_retry_delay
        self._outage = OutageLog(logger, "outcomes")
        self._batches: Batcher[_Outcome, RunResult | Unwritten] = Batcher(
            self._record_batch, MAX_BATCH, BATCHES
        )

    async def write(
        self, claimed: Task, outcome: AttemptOutcome, progress: ProgressUpdate | None
    ) -> RunResult:
        """Records how the attempt ended. The handler has run: while storage is
        unavailable, the outcome is written again (after waits that double) as long as the
        claim's lease lasts, rather than given up and the attempt run again."""
        delay = self._write_retry_delay
        # Read now: a batch applies the outcome to ``claimed``, which ends its lease there.
        lease_ends = claimed.lease_expires_at
        assert lease_ends is not None
        # A result goes with the results of other runs first (``_record_batch``).
        batched = (
            _Outcome(claimed, outcome, progress)
            if isinstance(outcome, Succeeded | Failed)
            else None
        )
        while True:
            try:
                result = await self._write_once(claimed, outcome, progress, batched)
            except Unavailable as exc:
                if self._clock.now() + delay >= lease_ends:
                    raise
                self._outage.held_back(
                    "outcome of task %s not written (%s): trying again in %.1fs",
                    claimed.id,
                    exc,
                    delay.total_seconds(),
                )
                await asyncio.sleep(delay.total_seconds())
                delay = min(delay * 2, WRITE_RETRY_MAX_DELAY)
                batched = None
                continue
            self._outage.over("outcomes written")
            return result

    async def _write_once(
        self,
        claimed: Task,
        outcome: AttemptOutcome,
        progress: ProgressUpdate | None,
        batched: _Outcome | None,
    ) -> RunResult:
        if batched is not None:
            recorded = await self._batches.add(batched)
            if isinstance(recorded, RunResult):
                return recorded
            return await self._record(claimed, outcome, progress, recorded)
        # Read first: a write that failed may have committed all the same.
        return await self._record(claimed, outcome, progress)

    async def release(self, claimed: Task) -> None:
        """Hands ``claimed`` back (QUEUED, the attempt not counted), even if the caller is
        cancelled again meanwhile; if that cannot be written, its lease runs out instead."""
        try:
            await asyncio.shield(self._record(claimed, Released()))
        except Exception:
            logger.warning("task %s stays RUNNING until its lease ends", claimed.id)

    async def _record_batch(
        self, requests: Sequence[Request[_Outcome]]
    ) -> list[RunResult | Unwritten]:
        """Writes the outcomes of ``requests`` over the claimed versions, without reading
        the tasks again, in one unit of work."""
        now = self._clock.now()
        async with self._uow() as uow:
            changes = []
            for request in requests:
                claimed = request.item.claimed
                await uow.tasks.track(claimed)
                apply_outcome(claimed, request.item.outcome, request.item.progress, now)
                changes.append(request.context.run(self._recorder.record, saved=[claimed]))
            try:
                await self._recorder.write(uow, changes)
            except ConcurrencyConflict:
                return [
                    Unwritten(request.item.claimed, change)
                    for request, change in zip(requests, changes, strict=True)
                ]
        for request, change in zip(requests, changes, strict=True):
            request.context.run(self._recorder.announce, change)
        return [RunResult(Outcome.RAN, request.item.claimed.status) for request in requests]

    async def _record(
        self,
        claimed: Task,
        outcome: AttemptOutcome,
        progress: ProgressUpdate | None = None,
        unwritten: Unwritten | None = None,
    ) -> RunResult:
        """Writes the outcome of one run, reading the task first: a handler's result that a
        batch could not write over the claimed version (a cancel request, a progress write
        or a takeover moved the version on), a cancel, or a release (the watcher saw the
        task change)."""
        for _ in range(CONFLICT_RETRIES):
            async with self._uow() as uow:
                task = await uow.tasks.get(claimed.id)
                if task is not None and unwritten and (change := written(task, unwritten)):
                    self._recorder.announce(change)
                    return RunResult(Outcome.RAN, task.status)
                if (
                    task is None
                    or task.status is not TaskStatus.RUNNING
                    or task.attempts != claimed.attempts
                ):
                    # The attempt was taken over (its lease ran out): its outcome is moot.
                    return RunResult(Outcome.NOTHING_TO_DO, task.status if task else None)
                apply_outcome(task, outcome, progress, self._clock.now())
                try:
                    await self._recorder.commit(uow, saved=[task])
                except ConcurrencyConflict:
                    continue
                return RunResult(Outcome.RAN, task.status)
        raise ConcurrencyConflict(claimed.id)
