"""Stateful property test of the Task aggregate: any sequence of transitions, legal or not,
keeps the lifecycle's invariants."""

from __future__ import annotations

from datetime import timedelta

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from domain import events
from domain.errors import IllegalTransition, InvalidTask
from domain.task import Task
from domain.values import TERMINAL_STATUSES, TaskError, TaskStatus, plain_text
from tests.factories import T0, make_task

EXPECTED_EVENT = {
    "start": events.TaskStarted,
    "succeed": events.TaskSucceeded,
    "cancel": (events.TaskCancelled, events.TaskCancelRequested),
    "confirm_cancel": events.TaskCancelled,
    "retry": events.TaskRequeued,
    "enqueue": events.TaskQueued,
    "expire": events.TaskFailed,
    "fail": (events.TaskRetryScheduled, events.TaskFailed, events.TaskCancelled),
    "release": (events.TaskQueued, events.TaskCancelled),
    "redispatch": events.TaskQueued,
    "report_progress": None,  # progress is noted, not an event: nothing is dispatched
}


class TaskLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        # Expires within the first minutes the steps of ``time_passes`` may span.
        self.task: Task = make_task(max_attempts=3, expires_at=T0 + timedelta(seconds=600))
        self.last_version = self.task.version
        self.last_updated = self.task.updated_at

    def _apply(self, name: str, action: object) -> None:
        before_status = self.task.status
        before_version = self.task.version
        try:
            action()  # type: ignore[operator]
        except IllegalTransition as error:
            assert self.task.version == before_version, "a refused transition changed the task"
            assert before_status.value in str(error)  # noqa: PT017
            assert self.task.pull_events() == []
            return
        recorded = self.task.pull_events()
        if self.task.version == before_version:
            # Only a repeated cancel request is a legal no-op.
            assert name == "cancel" and self.task.cancel_requested
            assert recorded == []
            return
        assert self.task.version == before_version + 1
        expected = EXPECTED_EVENT[name]
        if expected is None:
            assert recorded == []
            assert self.task.status is before_status
        else:
            assert len(recorded) == 1
            assert isinstance(recorded[0], expected)
        if before_status in TERMINAL_STATUSES:
            assert name == "retry", f"{name} left terminal state {before_status}"

    @rule(seconds=st.integers(min_value=-5, max_value=400))
    def time_passes(self, seconds: int) -> None:
        # The clock may even go backwards (another process's clock): the task must not.
        self.now = self.now + timedelta(seconds=seconds)

    @rule()
    def start(self) -> None:
        self._apply("start", lambda: self.task.start(self.now))

    @rule(result=st.one_of(st.none(), st.integers(), st.dictionaries(st.text(), st.integers())))
    def succeed(self, result: object) -> None:
        self._apply("succeed", lambda: self.task.succeed(self.now, result))

    @rule(
        retryable=st.booleans(),
        retry_after=st.one_of(st.none(), st.integers(min_value=0, max_value=1000)),
    )
    def fail(self, retryable: bool, retry_after: int | None) -> None:
        error = TaskError("Boom", "it broke", retryable=retryable)
        wait = timedelta(seconds=retry_after) if retry_after is not None else None
        attempt = self.task.attempts
        self._apply("fail", lambda: self.task.fail(self.now, error, wait))
        if self.task.status is TaskStatus.SCHEDULED and self.task.error is error:
            assert self.task.run_at is not None
            backoff = self.task.retry_policy.delay_after(attempt)
            waited = self.task.run_at - self.task.updated_at
            assert waited == max(backoff, wait or timedelta(0))

    @rule(
        fraction=st.one_of(
            st.floats(min_value=0, max_value=1),
            st.floats(allow_nan=True, allow_infinity=True),
        ),
        message=st.text(max_size=210),
    )
    def report_progress(self, fraction: float, message: str) -> None:
        before = (self.task.version, self.task.progress)
        try:
            self._apply(
                "report_progress", lambda: self.task.report_progress(self.now, fraction, message)
            )
        except InvalidTask:
            assert not (0 <= fraction <= 1) or len(message) > 200
            assert (self.task.version, self.task.progress) == before
            assert self.task.pull_events() == []
            return
        if self.task.version != before[0]:
            assert self.task.progress is not None
            assert (self.task.progress.fraction, self.task.progress.message) == (
                fraction,
                plain_text(message),  # NUL and lone surrogates kept as U+FFFD
            )

    @rule()
    def cancel(self) -> None:
        self._apply("cancel", lambda: self.task.cancel(self.now))

    @rule()
    def confirm_cancel(self) -> None:
        self._apply("confirm_cancel", lambda: self.task.confirm_cancel(self.now))

    @rule()
    def retry(self) -> None:
        self._apply("retry", lambda: self.task.retry(self.now))

    @rule()
    def release(self) -> None:
        self._apply("release", lambda: self.task.release(self.now))

    @rule()
    def redispatch(self) -> None:
        self._apply("redispatch", lambda: self.task.redispatch(self.now))

    @rule()
    def expire(self) -> None:
        self._apply("expire", lambda: self.task.expire(self.now))

    @rule()
    def check_deletable(self) -> None:
        """Allowed exactly once the task has finished; a check changes nothing."""
        before = (self.task.status, self.task.version)
        try:
            self.task.check_deletable()
        except IllegalTransition:
            assert self.task.status not in TERMINAL_STATUSES
        else:
            assert self.task.status in TERMINAL_STATUSES
        assert (self.task.status, self.task.version) == before
        assert self.task.pull_events() == []

    @precondition(lambda self: self.task.status is TaskStatus.SCHEDULED)
    @rule()
    def enqueue(self) -> None:
        self._apply("enqueue", lambda: self.task.enqueue(self.now))

    @invariant()
    def attempts_stay_within_bounds(self) -> None:
        assert 0 <= self.task.attempts <= self.task.retry_policy.max_attempts

    @invariant()
    def version_never_decreases(self) -> None:
        assert self.task.version >= self.last_version
        self.last_version = self.task.version

    @invariant()
    def timestamps_never_go_backwards(self) -> None:
        assert self.task.updated_at >= self.last_updated
        assert self.task.updated_at >= self.task.created_at
        self.last_updated = self.task.updated_at

    @invariant()
    def no_attempt_starts_after_the_expiry(self) -> None:
        task = self.task
        if task.started_at is not None and task.expires_at is not None:
            assert task.started_at < task.expires_at
        if task.status is TaskStatus.SCHEDULED and task.expires_at is not None:
            assert task.run_at is not None and task.run_at < task.expires_at

    @invariant()
    def status_fields_agree(self) -> None:
        task = self.task
        if task.status is TaskStatus.SUCCEEDED:
            assert task.error is None and task.finished_at is not None
        if task.status in TERMINAL_STATUSES:
            assert task.finished_at is not None
            assert task.lease_expires_at is None and not task.cancel_requested
        if task.status is TaskStatus.RUNNING:
            assert task.attempts >= 1 and task.lease_expires_at is not None
        if task.status is TaskStatus.SCHEDULED:
            assert task.run_at is not None
        if task.cancel_requested:
            assert task.status is TaskStatus.RUNNING
        if task.progress is not None:
            assert 0 <= task.progress.fraction <= 1
            assert task.started_at is not None
            assert task.started_at <= task.progress.updated_at <= task.updated_at
        if task.attempts == 0:
            assert task.progress is None, "progress outlived the attempt that reported it"


TestTaskLifecycle = TaskLifecycle.TestCase
TestTaskLifecycle.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
