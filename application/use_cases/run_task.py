"""Run one attempt of a delivered task: claim it, run its handler, record the outcome.

Claiming is a version-checked QUEUED -> RUNNING transition committed before the handler
runs, so a duplicate delivery finds the task RUNNING (or finished) and does nothing.
The outcome is recorded in a second transaction, only if the task is still in the attempt
this run claimed: a result is written once.

The claim records ``worker_id``, this worker's id in the worker registry: should the worker
stop heartbeating, the recovery sweep takes the attempt back before its lease ends.

The attempt itself (the handler, its timeout, the watch for a cancel request and the
progress writes) is ``application.attempts``; the last progress the handler reported is
written with the outcome.

Claims and outcomes of concurrent runs are written together (``Batcher``): one unit of
work reads the claimed tasks at once and writes every claim, and another writes every
outcome. A batch that meets a conflict (a duplicate delivery, a cancel request) is
written again one task at a time; a storage that wrote part of the batch before the
conflict (MongoDB) is read back, and a task found as this run wrote it counts as written.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from uuid import UUID

from attrs import frozen

from application.attempts import (
    AttemptOutcome,
    AttemptRunner,
    Failed,
    Released,
    Succeeded,
    apply_outcome,
)
from application.batching import Batcher, Request
from application.errors import ConcurrencyConflict, Unavailable
from application.ports.clock import Clock
from application.ports.handlers import HandlerRegistry, ProgressUpdate, TaskContext
from application.ports.unit_of_work import UnitOfWorkFactory
from application.recorder import Changes, TaskRecorder
from domain.task import Task
from domain.values import TaskError, TaskStatus

logger = logging.getLogger("taskport.worker")

CONFLICT_RETRIES = 5
MAX_BATCH = 100
"""Claims (or outcomes) written in one unit of work at most."""
BATCHES = 2
"""Units of work writing claims (and as many writing outcomes) at a time."""
WRITE_RETRY_DELAY = timedelta(seconds=0.5)
"""The first wait before writing an outcome again while storage is unavailable; each
next wait is twice as long, up to ``WRITE_RETRY_MAX_DELAY``."""
WRITE_RETRY_MAX_DELAY = timedelta(seconds=30)


class Outcome(enum.Enum):
    RAN = "ran"
    """An attempt ran and its outcome is committed."""
    NOTHING_TO_DO = "nothing to do"
    """The task is not waiting to run (finished, cancelled, not due, a duplicate)."""
    BUSY = "busy"
    """Another worker holds the task; look again once its lease ends."""
    UNKNOWN_TASK = "unknown task"


@frozen
class RunResult:
    outcome: Outcome
    status: TaskStatus | None = None
    retry_after: timedelta | None = None


@frozen
class RunTask:
    task_id: UUID


@frozen
class _Unwritten:
    """A batch did not commit: the change to write again alone, and what the batch
    tried to write (found stored as it is, it was written after all)."""

    attempted: Task | None = None
    changes: Changes | None = None


@frozen
class _Outcome:
    claimed: Task
    outcome: Succeeded | Failed
    progress: ProgressUpdate | None


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
        self._uow = uow
        self._recorder = recorder
        self._clock = clock
        self._attempts = AttemptRunner(
            uow, registry, recorder, clock, cancel_poll_interval, progress_interval
        )
        self._worker_id = worker_id
        self._write_retry_delay = write_retry_delay
        self._running: collections.Counter[UUID] = collections.Counter()
        """The tasks whose handlers run in this process: each counted once per claim of it
        made here that committed or is committing (two claims of one task, racing in two
        batches, are both counted until the loser's write fails)."""
        self._claims: Batcher[UUID, Task | RunResult | _Unwritten] = Batcher(
            self._claim_batch, MAX_BATCH, BATCHES
        )
        self._outcomes: Batcher[_Outcome, RunResult | _Unwritten] = Batcher(
            self._record_batch, MAX_BATCH, BATCHES
        )
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
        claiming = self._claims.put(command.task_id)
        try:
            # Shielded: a claim the batch commits after all is handed back, not dropped.
            claimed = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            await self._hand_back(claiming)
            raise
        if isinstance(claimed, _Unwritten):
            claimed = await self._claim(command.task_id, claimed)
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
                await self._release(claimed)
                raise
            # The last report the throttle held back is written with the outcome.
            return await self._finish(claimed, outcome, context.progress.take())
        finally:
            self._uncount(claimed.id)

    async def _finish(
        self, claimed: Task, outcome: AttemptOutcome, progress: ProgressUpdate | None
    ) -> RunResult:
        """Writes how the attempt ended, to the end even if the worker starts shutting down
        meanwhile (the handler has run: its outcome is not thrown away), then lets the
        cancellation go on."""
        writing = asyncio.ensure_future(self._write_outcome(claimed, outcome, progress))
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

    async def _hand_back(self, claiming: asyncio.Future[Task | RunResult | _Unwritten]) -> None:
        """The worker is shutting down while this delivery's claim is being written: a task
        the claim started is handed back at once rather than left RUNNING, and counted as
        running here, until its lease ends."""
        try:
            claimed = await claiming
        except (Exception, asyncio.CancelledError):
            return  # not claimed, or the batch was cancelled with the loop
        if not isinstance(claimed, Task):
            return
        self._uncount(claimed.id)
        await self._release(claimed)

    async def _release(self, claimed: Task) -> None:
        """Hands ``claimed`` back (QUEUED, the attempt not counted), even if the caller is
        cancelled again meanwhile; if that cannot be written, its lease runs out instead."""
        try:
            await asyncio.shield(self._record(claimed, Released()))
        except Exception:
            logger.warning("task %s stays RUNNING until its lease ends", claimed.id)

    async def _write_outcome(
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
                if batched is not None:
                    recorded = await self._outcomes.add(batched)
                    if isinstance(recorded, RunResult):
                        return recorded
                    return await self._record(claimed, outcome, progress, recorded)
                # Read first: a write that failed may have committed all the same.
                return await self._record(claimed, outcome, progress)
            except Unavailable as exc:
                if self._clock.now() + delay >= lease_ends:
                    raise
                logger.warning(
                    "outcome of task %s not written (%s): trying again in %.1fs",
                    claimed.id,
                    exc,
                    delay.total_seconds(),
                )
                await asyncio.sleep(delay.total_seconds())
                delay = min(delay * 2, WRITE_RETRY_MAX_DELAY)
                batched = None

    async def _claim_batch(
        self, requests: Sequence[Request[UUID]]
    ) -> list[Task | RunResult | _Unwritten]:
        """Claims the tasks of ``requests`` in one unit of work."""
        async with self._uow() as uow:
            found = await uow.tasks.get_many({request.item for request in requests})
            now = self._clock.now()
            results: list[Task | RunResult | _Unwritten] = []
            changed: list[tuple[int, Request[UUID], Task]] = []
            seen: set[UUID] = set()
            for request in requests:
                if request.item in seen:
                    # A duplicate delivery in the same batch: it looks once this one is done.
                    results.append(_Unwritten())
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
                    for (index, _, task), written in zip(changed, changes, strict=True):
                        results[index] = _Unwritten(task, written)
                    return [
                        result if isinstance(result, _Unwritten) else _Unwritten()
                        for result in results
                    ]
        for (_, request, _), written in zip(changed, changes, strict=True):
            request.context.run(self._recorder.announce, written)
        return [_claimed(result) if isinstance(result, Task) else result for result in results]

    async def _claim(self, task_id: UUID, unwritten: _Unwritten) -> Task | RunResult:
        for _ in range(CONFLICT_RETRIES):
            async with self._uow() as uow:
                task = await uow.tasks.get(task_id)
                if task is not None and (written := _written(task, unwritten)):
                    self._recorder.announce(written)
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
        worker left), both to be written, or nothing."""
        if task is None:
            return RunResult(Outcome.UNKNOWN_TASK)
        if task.lease_expired(now) or self._cut_short(task):
            # The worker that held this attempt stopped answering, or this worker holds it
            # but runs no handler for it: the attempt failed.
            task.fail(now, TaskError("AttemptLost", f"attempt {task.attempts} was lost"))
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
        """Counts the tasks of ``claimed`` that were started as running here (until
        ``__call__`` is done with them) from before their claim commits, and no longer if it
        fails: a concurrent claim that reads them committed must not take them for attempts
        this worker dropped."""
        started = [task.id for task in claimed if task.status is TaskStatus.RUNNING]
        self._running.update(started)
        try:
            yield
        except BaseException:
            for task_id in started:
                self._uncount(task_id)
            raise

    def _uncount(self, task_id: UUID) -> None:
        self._running[task_id] -= 1
        if self._running[task_id] <= 0:
            del self._running[task_id]

    def _cut_short(self, task: Task) -> bool:
        """Whether ``task`` runs an attempt this worker claimed but no longer runs: its
        outcome was never written (storage went away), or the claim committed unseen."""
        return (
            task.status is TaskStatus.RUNNING
            and self._worker_id is not None
            and task.worker_id == self._worker_id
            and task.id not in self._running
        )

    async def _record_batch(
        self, requests: Sequence[Request[_Outcome]]
    ) -> list[RunResult | _Unwritten]:
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
                    _Unwritten(request.item.claimed, written)
                    for request, written in zip(requests, changes, strict=True)
                ]
        for request, written in zip(requests, changes, strict=True):
            request.context.run(self._recorder.announce, written)
        return [RunResult(Outcome.RAN, request.item.claimed.status) for request in requests]

    async def _record(
        self,
        claimed: Task,
        outcome: AttemptOutcome,
        progress: ProgressUpdate | None = None,
        unwritten: _Unwritten | None = None,
    ) -> RunResult:
        """Writes the outcome of one run, reading the task first: a handler's result that a
        batch could not write over the claimed version (a cancel request, a progress write
        or a takeover moved the version on), a cancel, or a release (the watcher saw the
        task change)."""
        for _ in range(CONFLICT_RETRIES):
            async with self._uow() as uow:
                task = await uow.tasks.get(claimed.id)
                if task is not None and unwritten and (written := _written(task, unwritten)):
                    self._recorder.announce(written)
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


def _claimed(task: Task) -> Task | RunResult:
    """The claimed task, or, for a task whose lost attempt was failed instead, the result."""
    if task.status is not TaskStatus.RUNNING:
        return RunResult(Outcome.RAN, task.status)
    return task


def _written(stored: Task, unwritten: _Unwritten) -> Changes | None:
    """The changes of ``unwritten`` if a batch wrote them after all (a storage without
    transactions writes the tasks of a batch before the one that conflicted)."""
    attempted = unwritten.attempted
    if (
        attempted is not None
        and stored.version == attempted.version
        and stored.updated_at == attempted.updated_at
        and stored.status is attempted.status
    ):
        return unwritten.changes
    return None
