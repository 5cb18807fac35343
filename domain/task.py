"""The Task aggregate and its state machine.

SCHEDULED --due--> QUEUED --start--> RUNNING --succeed--> SUCCEEDED
RUNNING --fail, attempts left--> SCHEDULED (run_at = now + backoff) --due--> QUEUED
RUNNING --fail, none left (or not retryable)--> FAILED
SCHEDULED | QUEUED --cancel--> CANCELLED; RUNNING --cancel--> cancel requested,
confirmed by the worker (--confirm_cancel--> CANCELLED).
FAILED | CANCELLED --retry--> QUEUED (a fresh set of attempts).
RUNNING --release--> QUEUED when a worker shuts down mid-attempt (the attempt is not counted).
SCHEDULED | QUEUED --expire--> FAILED once ``expires_at`` has come before an attempt started.

While RUNNING, the handler's progress may be noted (``report_progress``): it changes no
status and records no event; a new attempt starts with no progress.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID

from attrs import define, field

from domain import events
from domain.errors import IllegalTransition, InvalidTask
from domain.values import (
    DEFAULT_QUEUE,
    MAX_OWNER_LENGTH,
    MAX_TIMEOUT_SECONDS,
    TERMINAL_STATUSES,
    JsonValue,
    Progress,
    RetryPolicy,
    TaskError,
    TaskStatus,
    queue_name_problem,
)

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")
"""A kind's name, anchored as JSON Schema and pydantic read a pattern (``$``: the end of the
text). Python's ``$`` also matches before a final newline: match it with ``fullmatch``."""
MAX_CALLBACK_URL_LENGTH = 2048
SCHEDULE_KEY_PREFIX = "schedule:"
"""Idempotency keys starting so are the keys of schedules' occurrences (see
``domain.schedule``): only the task a schedule submits may hold one."""
LEASE_GRACE = timedelta(seconds=30)
"""How long past its timeout a running attempt is presumed alive before it counts as lost."""

_WAITING = frozenset({TaskStatus.SCHEDULED, TaskStatus.QUEUED})
_CANCELLABLE = frozenset({*_WAITING, TaskStatus.RUNNING})
_RETRYABLE_BY_HAND = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})


@define(eq=False)
class Task:
    """A unit of work of some kind, owned by a principal, with its lifecycle."""

    id: UUID
    owner: str
    kind: str
    payload: JsonValue
    status: TaskStatus
    retry_policy: RetryPolicy
    timeout: timedelta
    created_at: datetime
    updated_at: datetime
    run_at: datetime | None = None
    idempotency_key: str | None = None
    request_fingerprint: str | None = None
    callback_url: str | None = None
    """Where the task's outcome is sent each time it finishes (see ``application.callbacks``)."""
    schedule_id: UUID | None = None
    """The recurring schedule that submitted the task, if one did."""
    request_id: str | None = None
    """The request that submitted the task, named in its run messages for the log lines of
    its attempts."""
    expires_at: datetime | None = None
    """No attempt starts from then on: the task fails as ``Expired`` instead (a retry that
    would come later is not scheduled)."""
    queue: str = DEFAULT_QUEUE
    """The queue its run messages go to: only the workers that take this queue run it."""
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    result: JsonValue = None
    error: TaskError | None = None
    progress: Progress | None = None
    worker_id: str | None = None
    """The worker running the current attempt, while RUNNING."""
    version: int = 1
    _events: list[events.TaskEvent] = field(factory=list, alias="_events", repr=False)

    @classmethod
    def submit(
        cls,
        *,
        id: UUID,
        owner: str,
        kind: str,
        payload: JsonValue,
        now: datetime,
        retry_policy: RetryPolicy,
        timeout: timedelta,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
        request_fingerprint: str | None = None,
        callback_url: str | None = None,
        schedule_id: UUID | None = None,
        request_id: str | None = None,
        expires_at: datetime | None = None,
        queue: str = DEFAULT_QUEUE,
    ) -> Task:
        """A new task: SCHEDULED when ``run_at`` lies ahead, QUEUED otherwise. ``run_at`` and
        ``expires_at`` are kept in UTC: a time whose offset takes it out of the calendar
        there is refused, and so is an expiry not after the task is due."""
        if not KIND_PATTERN.fullmatch(kind):
            raise InvalidTask(
                f"kind {kind!r} must be 1-100 characters of a-z, 0-9, '_', '.', '-' "
                "starting with a letter"
            )
        if problem := queue_name_problem(queue):
            raise InvalidTask(problem)
        if not 0 < len(owner) <= MAX_OWNER_LENGTH:
            raise InvalidTask(f"a task needs an owner of 1-{MAX_OWNER_LENGTH} characters")
        if callback_url is not None and not 0 < len(callback_url) <= MAX_CALLBACK_URL_LENGTH:
            raise InvalidTask(f"callback_url must be 1-{MAX_CALLBACK_URL_LENGTH} characters")
        if schedule_id is None and (idempotency_key or "").startswith(SCHEDULE_KEY_PREFIX):
            raise InvalidTask(
                f"idempotency keys starting with {SCHEDULE_KEY_PREFIX!r} are kept for the "
                "tasks of schedules"
            )
        if not timedelta(0) < timeout <= timedelta(seconds=MAX_TIMEOUT_SECONDS):
            raise InvalidTask(
                f"timeout must be over 0 (in whole microseconds) and at most "
                f"{MAX_TIMEOUT_SECONDS} seconds, got {timeout.total_seconds():g}"
            )
        run_at = _in_utc("run_at", run_at)
        expires_at = _in_utc("expires_at", expires_at)
        if expires_at is not None and expires_at <= max(now, run_at or now):
            due = "its run_at" if run_at is not None and run_at > now else "its submission"
            raise InvalidTask(f"expires_at {expires_at.isoformat()} must be after {due}")
        scheduled = run_at is not None and run_at > now
        task = cls(
            id=id,
            owner=owner,
            kind=kind,
            payload=payload,
            status=TaskStatus.SCHEDULED if scheduled else TaskStatus.QUEUED,
            retry_policy=retry_policy,
            timeout=timeout,
            created_at=now,
            updated_at=now,
            run_at=run_at,
            idempotency_key=idempotency_key,
            request_fingerprint=request_fingerprint,
            callback_url=callback_url,
            schedule_id=schedule_id,
            request_id=request_id,
            expires_at=expires_at,
            queue=queue,
        )
        task._record(events.TaskSubmitted(id, kind, now, scheduled=scheduled))
        return task

    # -- queries -------------------------------------------------------------

    @property
    def attempts_left(self) -> int:
        return self.retry_policy.max_attempts - self.attempts

    def is_due(self, now: datetime) -> bool:
        return self.status is TaskStatus.SCHEDULED and (self.run_at is None or self.run_at <= now)

    @property
    def due_since(self) -> datetime:
        """Since when a QUEUED task waits for a worker: the later of its creation and its
        ``run_at``, which a retry (after its backoff or by hand) and a hand-back set to the
        time the task is queued again."""
        if self.run_at is None:
            return self.created_at
        return max(self.created_at, self.run_at)

    def has_expired(self, now: datetime) -> bool:
        """Whether ``expires_at`` has come for a task waiting for an attempt (by the task's
        own clock, which a clock that went backwards never rewinds)."""
        return (
            self.status in _WAITING
            and self.expires_at is not None
            and self.expires_at <= max(now, self.updated_at)
        )

    def lease_expired(self, now: datetime) -> bool:
        return (
            self.status is TaskStatus.RUNNING
            and self.lease_expires_at is not None
            and self.lease_expires_at <= now
        )

    def pull_events(self) -> list[events.TaskEvent]:
        """The events recorded since the last call, oldest first."""
        recorded, self._events = self._events, []
        return recorded

    # -- transitions ---------------------------------------------------------

    def enqueue(self, now: datetime) -> None:
        """A scheduled task whose time has come joins the queue."""
        self._require("enqueue", {TaskStatus.SCHEDULED})
        if not self.is_due(now):
            raise IllegalTransition("enqueue", self.status, f"it is not due before {self.run_at}")
        now = self._touch(now)
        self.status = TaskStatus.QUEUED
        self._record(events.TaskQueued(self.id, self.kind, now))

    def start(self, now: datetime, worker_id: str | None = None) -> None:
        """A worker claims the task and begins the next attempt."""
        self._require("start", {TaskStatus.QUEUED})
        if self.attempts_left <= 0:
            raise IllegalTransition("start", self.status, "no attempts left")
        if self.has_expired(now):
            raise IllegalTransition("start", self.status, f"it expired at {self.expires_at}")
        now = self._touch(now)
        self.status = TaskStatus.RUNNING
        self.attempts += 1
        self.started_at = now
        self.progress = None
        self.worker_id = worker_id
        self.lease_expires_at = now + self.timeout + LEASE_GRACE
        self._record(events.TaskStarted(self.id, self.kind, now, attempt=self.attempts))

    def release(self, now: datetime) -> None:
        """The worker stopped before the attempt ended (shutdown): back to the queue, and
        the unfinished attempt is not counted."""
        self._require("release", {TaskStatus.RUNNING})
        now = self._touch(now)
        if self.cancel_requested:
            self.status = TaskStatus.CANCELLED
            self._finish(now)
            self._record(events.TaskCancelled(self.id, self.kind, now))
            return
        self.status = TaskStatus.QUEUED
        self.attempts -= 1
        self.run_at = now
        self.lease_expires_at = None
        self.worker_id = None
        self.progress = None
        self._record(events.TaskQueued(self.id, self.kind, now))

    def redispatch(self, now: datetime) -> None:
        """Its dispatch message is presumed lost (a broker that forgot it): queue it again.
        A duplicate message is harmless, the start is version-checked."""
        self._require("redispatch", {TaskStatus.QUEUED})
        now = self._touch(now)
        self._record(events.TaskQueued(self.id, self.kind, now))

    def succeed(self, now: datetime, result: JsonValue) -> None:
        """The running attempt returned a result; it is recorded once and for all."""
        self._require("succeed", {TaskStatus.RUNNING})
        now = self._touch(now)
        self.status = TaskStatus.SUCCEEDED
        self.result = result
        self.error = None
        self._finish(now)
        self._record(
            events.TaskSucceeded(self.id, self.kind, now, attempt=self.attempts, result=result)
        )

    def report_progress(self, now: datetime, fraction: float, message: str = "") -> None:
        """Note how far the running attempt got. Not a transition: the status stays RUNNING
        and no event is recorded (progress is read, not dispatched)."""
        self._require("report progress of", {TaskStatus.RUNNING})
        progress = Progress(fraction, message, max(now, self.updated_at))
        now = self._touch(now)
        self.progress = progress

    def fail(self, now: datetime, error: TaskError, retry_after: timedelta | None = None) -> None:
        """The running attempt failed: retry after a backoff while attempts are left.

        ``retry_after`` is the least wait the failure asks for (an HTTP ``Retry-After``);
        the retry waits the longer of it and the backoff."""
        self._require("fail", {TaskStatus.RUNNING})
        if self.cancel_requested:
            self.confirm_cancel(now)
            return
        now = self._touch(now)
        self.error = error
        delay = self.retry_policy.delay_after(self.attempts)
        if retry_after is not None:
            delay = max(delay, retry_after)
        expired_by_then = self.expires_at is not None and now + delay >= self.expires_at
        if error.retryable and self.attempts_left > 0 and not expired_by_then:
            self.status = TaskStatus.SCHEDULED
            self.run_at = now + delay
            self.lease_expires_at = None
            self.worker_id = None
            self._record(
                events.TaskRetryScheduled(
                    self.id, self.kind, now, attempt=self.attempts, error=error, run_at=self.run_at
                )
            )
            return
        self.status = TaskStatus.FAILED
        self._finish(now)
        self._record(events.TaskFailed(self.id, self.kind, now, attempt=self.attempts, error=error))

    def cancel(self, now: datetime) -> None:
        """Cancel a task that has not finished; a running one is asked to stop."""
        self._require("cancel", _CANCELLABLE)
        if self.status is TaskStatus.RUNNING:
            if self.cancel_requested:
                return
            now = self._touch(now)
            self.cancel_requested = True
            self._record(events.TaskCancelRequested(self.id, self.kind, now))
            return
        now = self._touch(now)
        self.status = TaskStatus.CANCELLED
        self._finish(now)
        self._record(events.TaskCancelled(self.id, self.kind, now))

    def confirm_cancel(self, now: datetime) -> None:
        """The worker running the task stopped it because cancel was requested."""
        self._require("confirm cancel of", {TaskStatus.RUNNING})
        if not self.cancel_requested:
            raise IllegalTransition("confirm cancel of", self.status, "no cancel was requested")
        now = self._touch(now)
        self.status = TaskStatus.CANCELLED
        self._finish(now)
        self._record(events.TaskCancelled(self.id, self.kind, now))

    def expire(self, now: datetime) -> None:
        """The task's ``expires_at`` came before an attempt started: it fails, unrun."""
        if self.expires_at is None:
            raise IllegalTransition("expire", self.status, "it has no expiry")
        expired_at = self.expires_at.isoformat()
        if not self.has_expired(now):
            raise IllegalTransition("expire", self.status, f"it expires at {expired_at}")
        now = self._touch(now)
        self.status = TaskStatus.FAILED
        self.error = TaskError(
            "Expired",
            f"its next attempt had not started when it expired at {expired_at}",
            retryable=False,
        )
        self._finish(now)
        self._record(
            events.TaskFailed(self.id, self.kind, now, attempt=self.attempts, error=self.error)
        )

    def retry(self, now: datetime) -> None:
        """Send a failed or cancelled task back to the queue with a fresh set of attempts
        (and no expiry: retried by hand, it is wanted now)."""
        self._require("retry", _RETRYABLE_BY_HAND)
        now = self._touch(now)
        self.expires_at = None
        self.status = TaskStatus.QUEUED
        self.attempts = 0
        self.result = None
        self.error = None
        self.run_at = now
        self.started_at = None
        self.finished_at = None
        self.cancel_requested = False
        self.progress = None
        self._record(events.TaskRequeued(self.id, self.kind, now))

    def check_deletable(self) -> None:
        """A task may be deleted once it has finished: a waiting or running one is cancelled
        first (its deletion would otherwise leave a worker running what nobody can see)."""
        if self.status not in TERMINAL_STATUSES:
            raise IllegalTransition("delete", self.status, "cancel it first")

    # -- internals -----------------------------------------------------------

    def _require(self, transition: str, allowed: frozenset[TaskStatus] | set[TaskStatus]) -> None:
        if self.status not in allowed:
            raise IllegalTransition(transition, self.status)

    def _touch(self, now: datetime) -> datetime:
        """Advance the clock of the task; a clock that went backwards never rewinds it."""
        now = max(now, self.updated_at)
        self.updated_at = now
        self.version += 1
        return now

    def _finish(self, now: datetime) -> None:
        self.finished_at = now
        self.lease_expires_at = None
        self.worker_id = None
        self.cancel_requested = False

    def _record(self, event: events.TaskEvent) -> None:
        self._events.append(event)


def _in_utc(name: str, moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidTask(
            f"{name} {moment.isoformat()} is out of range in UTC (years 1 to 9999)"
        ) from None
