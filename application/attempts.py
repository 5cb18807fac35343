"""One attempt of a claimed task's handler: its timeout, the watch for a cancel request
(which writes the handler's progress on the same beat), and what the handler's return or
raise makes of the attempt.

The watcher looks at the stored task every ``cancel_poll_interval``, the first time one
interval after the handler started (most handlers finish before that): a cancel request,
or the attempt taken over by another worker, stops the handler. The latest progress the
handler reported is written at most once per ``progress_interval``; the last report is
written with the outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import datetime, timedelta
from uuid import UUID

from attrs import frozen

from application.errors import ConcurrencyConflict, PermanentFailure, RetryLater, Unavailable
from application.json_values import json_size, unstorable
from application.ports.clock import Clock
from application.ports.handlers import HandlerRegistry, ProgressUpdate, TaskContext
from application.ports.unit_of_work import UnitOfWork, UnitOfWorkFactory
from application.recorder import TaskRecorder
from domain.task import Task
from domain.values import JsonValue, TaskError, TaskStatus

logger = logging.getLogger("taskport.worker")

MAX_RESULT_BYTES = 1024 * 1024
MAX_RETRY_AFTER = timedelta(days=366)
"""The longest wait a handler may ask for before its task's next attempt (``RetryLater``)."""


@frozen
class Succeeded:
    result: JsonValue


@frozen
class Failed:
    error: TaskError
    retry_after: timedelta | None = None


class Cancelled:
    pass


class Released:
    """The attempt was handed back unrun: the worker is shutting down."""


AttemptOutcome = Succeeded | Failed | Cancelled | Released


class AttemptRunner:
    """Runs the handler of a claimed task for one attempt and says how the attempt ended;
    writes nothing but the handler's progress (the caller records the outcome)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        registry: HandlerRegistry,
        recorder: TaskRecorder,
        clock: Clock,
        cancel_poll_interval: timedelta,
        progress_interval: timedelta,
    ) -> None:
        self._uow = uow
        self._registry = registry
        self._recorder = recorder
        self._clock = clock
        self._cancel_poll = cancel_poll_interval.total_seconds()
        self._progress_interval = progress_interval.total_seconds()

    async def run(self, task: Task, context: TaskContext) -> AttemptOutcome:
        handler = self._registry.get(task.kind)
        if handler is None:
            known = ", ".join(kind.name for kind in self._registry.kinds())
            message = f"no handler for kind {task.kind!r} (known: {known})"
            return Failed(TaskError("UnknownKind", message, retryable=False))
        running: asyncio.Future[JsonValue] = asyncio.ensure_future(
            _contained(handler(task.payload, context))
        )
        # Most handlers finish within one poll interval: the watcher starts only after it.
        watcher: asyncio.Task[None] | None = None

        def watch() -> None:
            nonlocal watcher
            watcher = asyncio.create_task(self._watch_for_cancel(task.id, running, context))

        start_watching = asyncio.get_running_loop().call_later(self._cancel_poll, watch)
        timeout = _timed_out(task)
        try:
            async with asyncio.timeout(task.timeout.total_seconds()) as deadline:
                result = await running
            # A handler that swallowed its cancellation may still return: too late, or
            # after it was cancelled, its result is not the task's.
            if deadline.expired():
                return timeout
            if context.cancelled.is_set():
                return Cancelled()
        except TimeoutError:
            context.cancelled.set()  # a handler left running in a thread may still stop
            return timeout
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if context.cancelled.is_set() and current is not None and not current.cancelling():
                return Cancelled()
            raise
        except _ProcessEnding as exc:
            return Failed(TaskError(type(exc.raised).__name__, str(exc)))
        except PermanentFailure as exc:
            return Failed(TaskError(type(exc).__name__, _message_of(exc), retryable=False))
        except RetryLater as exc:
            return _retry_later(exc)
        except Exception as exc:
            return Failed(TaskError(type(exc).__name__, _message_of(exc)))
        finally:
            start_watching.cancel()
            if watcher is not None:
                watcher.cancel()
        return _checked_result(result)

    async def _watch_for_cancel(
        self, task_id: UUID, running: asyncio.Future[JsonValue], context: TaskContext
    ) -> None:
        loop = asyncio.get_running_loop()
        next_progress_write = loop.time()
        while not running.done():
            # The watcher is cancelled once the handler ends, maybe in the middle of a look:
            # shielded, the look still ends its unit of work by itself (a connection
            # cancelled while going back to the pool is dropped, with an error logged).
            look = self._look(task_id, running, context, loop.time() >= next_progress_write)
            if await asyncio.shield(look):
                next_progress_write = loop.time() + self._progress_interval
            await asyncio.sleep(self._cancel_poll)

    async def _look(
        self,
        task_id: UUID,
        running: asyncio.Future[JsonValue],
        context: TaskContext,
        write_progress: bool,
    ) -> bool:
        """One look at the stored task: stops the handler when the task was cancelled (or
        taken over); with ``write_progress``, writes the latest progress. True when it did."""
        try:
            async with self._uow() as uow:
                task = await uow.tasks.get(task_id)
                if task is None or task.cancel_requested or task.attempts != context.attempt:
                    context.cancelled.set()
                    running.cancel()
                    return False
                return write_progress and await self._write_progress(uow, task, context)
        except Unavailable as exc:  # the next look tries again; the handler runs on
            logger.warning("task %s not checked for a cancel request: %s", task_id, exc)
            return False

    async def _write_progress(self, uow: UnitOfWork, task: Task, context: TaskContext) -> bool:
        update = context.progress.take()
        if update is None or task.status is not TaskStatus.RUNNING:
            return False
        task.report_progress(self._clock.now(), update.fraction, update.message)
        try:
            await self._recorder.commit(uow, saved=[task])
        except Exception as exc:  # a lost progress write must never stop the watcher
            context.progress.put_back(update)
            if not isinstance(exc, ConcurrencyConflict):
                logger.warning("progress of task %s not written: %s", task.id, exc)
            return False
        return True


def apply_outcome(
    task: Task, outcome: AttemptOutcome, progress: ProgressUpdate | None, now: datetime
) -> None:
    """Makes the transition ``outcome`` calls for, after the last ``progress`` reported."""
    if progress is not None:
        task.report_progress(now, progress.fraction, progress.message)
    if isinstance(outcome, Succeeded):
        task.succeed(now, outcome.result)
    elif isinstance(outcome, Failed):
        task.fail(now, outcome.error, outcome.retry_after)
    elif isinstance(outcome, Released):
        task.release(now)
    else:
        task.confirm_cancel(now)


class _ProcessEnding(Exception):
    """A handler raised what ends a process (``sys.exit()``, ``KeyboardInterrupt``, any
    ``BaseException`` but a cancellation)."""

    def __init__(self, raised: BaseException) -> None:
        name = type(raised).__name__
        said = _message_of(raised) if raised.args else ""
        super().__init__(
            f"the handler raised {name}: {said}" if said else f"the handler raised {name}"
        )
        self.raised = raised


async def _contained(running: Awaitable[JsonValue]) -> JsonValue:
    """Awaits a handler, turning what it raises to end the process into an ordinary
    failure: out of a task of the event loop, ``SystemExit`` and ``KeyboardInterrupt``
    stop the loop, and so the whole worker, attempt after attempt of the task."""
    try:
        return await running
    except (Exception, asyncio.CancelledError, GeneratorExit):
        raise
    except BaseException as exc:
        raise _ProcessEnding(exc) from exc


def _timed_out(task: Task) -> Failed:
    seconds = task.timeout.total_seconds()
    return Failed(TaskError("Timeout", f"no result within {seconds:g} seconds"))


def _retry_later(exc: RetryLater) -> Failed:
    """The retry a handler asked for; one asked past ``MAX_RETRY_AFTER``, or not as a
    ``timedelta``, fails the task at once: the retry's time could not be written (past the
    calendar's end), and with it the outcomes written in the same batch."""
    wait: object = exc.retry_after
    if wait is None or (isinstance(wait, timedelta) and wait <= MAX_RETRY_AFTER):
        return Failed(TaskError(type(exc).__name__, _message_of(exc)), exc.retry_after)
    given = repr(wait) if isinstance(wait, timedelta) else f"a value of type {type(wait).__name__}"
    message = f"retry_after must be a timedelta of at most {MAX_RETRY_AFTER.days} days, got {given}"
    return Failed(TaskError("InvalidRetryAfter", message, retryable=False))


def _message_of(exc: BaseException) -> str:
    """What a handler's exception says, or that it says nothing readable: an exception
    whose ``__str__`` raises must still fail its attempt, not leave it RUNNING."""
    try:
        return str(exc) or repr(exc)
    except Exception:
        return f"{type(exc).__name__} raised; its message could not be read"


def _checked_result(result: JsonValue) -> AttemptOutcome:
    # Looked through first: ``json.dumps`` would recurse past Python's limit on a result
    # nested too deep.
    if problem := unstorable(result, "result"):
        message = f"the result cannot be stored: {problem}"
        return Failed(TaskError("InvalidResult", message, retryable=False))
    try:
        size = json_size(result)
    except (TypeError, ValueError) as exc:
        message = f"the result is not JSON: {exc}"
        return Failed(TaskError("InvalidResult", message, retryable=False))
    if size > MAX_RESULT_BYTES:
        message = f"the result is {size} bytes, over the limit of {MAX_RESULT_BYTES}"
        return Failed(TaskError("ResultTooLarge", message, retryable=False))
    return Succeeded(result)
