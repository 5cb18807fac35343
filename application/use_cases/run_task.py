"""Run one attempt of a delivered task: claim it, run its handler, record the outcome.

Claiming (``application.claims``) is a version-checked QUEUED -> RUNNING transition
committed before the handler runs, so a duplicate delivery finds the task RUNNING (or
finished) and does nothing. The attempt itself (``application.attempts``) runs the handler
with its timeout, the watch for a cancel request and the progress writes. The outcome
(``application.outcome_writer``) is recorded in a second transaction, only if the task is
still in the attempt this run claimed: a result is written once. The last progress the
handler reported is written with the outcome.

Claims, and outcomes, of concurrent runs are written together, each kind in batches.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from uuid import UUID

from attrs import frozen

from application.attempts import AttemptOutcome, AttemptRunner
from application.claims import TaskClaims
from application.outcome_writer import WRITE_RETRY_DELAY, OutcomeWriter
from application.ports.clock import Clock
from application.ports.handlers import HandlerRegistry, ProgressUpdate, TaskContext
from application.ports.unit_of_work import UnitOfWorkFactory
from application.recorder import TaskRecorder
from application.run_results import Outcome, RunResult
from domain.task import Task

__all__ = ["Outcome", "RunResult", "RunTask", "RunTaskHandler"]

logger = logging.getLogger("taskport.worker")


@frozen
class RunTask:
    task_id: UUID


class RunTaskHandler:
    """Runs the task a delivery names: claims it, runs one attempt, records the outcome.

    One instance serves every delivery of a process, so that the claims (and the outcomes)
    of concurrent deliveries are written together; ``drain`` waits for the runs in progress
    as the process stops.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        registry: HandlerRegistry,
        recorder: TaskRecorder,
        clock: Clock,
        cancel_poll_interval: timedelta = timedelta(seconds=1),
        progress_interval: timedelta = timedelta(seconds=1),
        worker_id: str | None = None,
        write_retry_delay: timedelta = WRITE_RETRY_DELAY,
    ) -> None:
        self._attempts = AttemptRunner(
            uow, registry, recorder, clock, cancel_poll_interval, progress_interval
        )
        self._outcomes = OutcomeWriter(uow, recorder, clock, write_retry_delay)
        self._claims = TaskClaims(uow, recorder, clock, worker_id, self._outcomes.release)
        self._in_progress = 0
        self._none_in_progress = asyncio.Event()
        self._none_in_progress.set()

    async def __call__(self, command: RunTask) -> RunResult:
        self._in_progress += 1
        self._none_in_progress.clear()
        try:
            return await self._run(command)
        finally:
            self._in_progress -= 1
            if not self._in_progress:
                self._none_in_progress.set()

    @property
    def in_progress(self) -> int:
        """The runs in progress in this process: of deliveries, and of Pub/Sub pushes."""
        return self._in_progress

    async def drain(self) -> None:
        """Returns once no run is in progress. A run cancelled as its process stops goes on
        until it has handed its task back (or written the outcome its handler had): the
        process waits for that before it closes the storage."""
        await self._none_in_progress.wait()

    async def _run(self, command: RunTask) -> RunResult:
        claimed = await self._claims.claim(command.task_id)
        if isinstance(claimed, RunResult):
            return claimed
        context = TaskContext(
            task_id=claimed.id,
            owner=claimed.owner,
            kind=claimed.kind,
            attempt=claimed.attempts,
            max_attempts=claimed.retry_policy.max_attempts,
        )
        try:
            try:
                outcome = await self._attempts.run(claimed, context)
            except asyncio.CancelledError:
                # The worker is shutting down: hand the task back rather than let its lease
                # run out.
                context.cancelled.set()
                await self._outcomes.release(claimed)
                raise
            # The last report the throttle held back is written with the outcome.
            return await self._finish(claimed, outcome, context.progress.take())
        finally:
            self._claims.finished(claimed.id)

    async def _finish(
        self, claimed: Task, outcome: AttemptOutcome, progress: ProgressUpdate | None
    ) -> RunResult:
        """Writes how the attempt ended, to the end even if the worker starts shutting down
        meanwhile (the handler has run: its outcome is not thrown away), then lets the
        cancellation go on."""
        writing = asyncio.ensure_future(self._outcomes.write(claimed, outcome, progress))
        try:
            return await asyncio.shield(writing)
        except asyncio.CancelledError:
            try:
                await asyncio.shield(writing)
            except Exception as exc:
                logger.warning(
                    "outcome of task %s not written (%s): it stays RUNNING until its lease ends",
                    claimed.id,
                    exc,
                )
            raise
