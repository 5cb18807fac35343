from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain import events
from domain.errors import IllegalTransition, InvalidTask
from domain.task import LEASE_GRACE
from domain.values import (
    MAX_ERROR_MESSAGE,
    MAX_ERROR_TYPE,
    MAX_OWNER_LENGTH,
    RetryPolicy,
    TaskError,
    TaskStatus,
    consumed_problem,
    queues_problem,
)
from tests.factories import T0, make_task

BOOM = TaskError("Boom", "it broke")


def test_a_task_submitted_for_later_is_scheduled_and_due_at_its_time() -> None:
    task = make_task(run_at=T0 + timedelta(minutes=5))
    assert task.status is TaskStatus.SCHEDULED
    with pytest.raises(IllegalTransition, match="not due"):
        task.enqueue(T0 + timedelta(minutes=4))
    task.enqueue(T0 + timedelta(minutes=5))
    assert task.status is TaskStatus.QUEUED


def test_a_run_at_in_the_past_queues_at_once() -> None:
    assert make_task(run_at=T0 - timedelta(days=1)).status is TaskStatus.QUEUED


def test_a_run_at_is_kept_in_utc() -> None:
    run_at = datetime(2030, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=9)))
    task = make_task(run_at=run_at)
    assert (task.run_at, task.run_at.tzinfo) == (run_at, UTC)


@pytest.mark.parametrize(
    "run_at",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-12))),
    ],
)
def test_a_run_at_outside_the_calendar_in_utc_is_refused(run_at: datetime) -> None:
    with pytest.raises(InvalidTask, match="out of range in UTC"):
        make_task(run_at=run_at)


@pytest.mark.parametrize("queue", ["", "Images", "a.b", "1st", "x" * 41, "a b"])
def test_a_queue_that_no_broker_could_name_is_refused(queue: str) -> None:
    with pytest.raises(InvalidTask, match="1-40 characters"):
        make_task(queue=queue)


@pytest.mark.parametrize(
    ("queues", "problem"),
    [
        ((), "at least one queue"),
        (("default", "images", "images"), "named twice"),
        (("default", "Images"), "queue 'Images' must be"),
        (("default", "images"), None),
    ],
)
def test_a_deployment_has_one_or_more_queues_each_named_once(
    queues: tuple[str, ...], problem: str | None
) -> None:
    found = queues_problem(queues)
    assert found is None if problem is None else problem in (found or "")


@pytest.mark.parametrize(
    ("consumed", "problem"),
    [
        ((), "not none"),
        (("video",), "not video"),
        (("default", "video"), "not video"),
        (("images",), None),
    ],
)
def test_a_consumer_takes_one_or_more_of_the_deployments_queues(
    consumed: tuple[str, ...], problem: str | None
) -> None:
    found = consumed_problem(consumed, ("default", "images"))
    assert found is None if problem is None else problem in (found or "")


def test_a_task_goes_to_the_default_queue_unless_it_names_another() -> None:
    assert make_task().queue == "default"
    assert make_task(queue="images-2_b").queue == "images-2_b"


def test_an_error_is_cut_to_its_limits() -> None:
    error = TaskError("T" * 300, "m" * 10_000)
    assert (len(error.type), len(error.message)) == (MAX_ERROR_TYPE, MAX_ERROR_MESSAGE)
    assert error.message.endswith("m…")
    assert TaskError("Short", "m" * MAX_ERROR_MESSAGE).message == "m" * MAX_ERROR_MESSAGE


def test_an_illegal_transition_names_the_transition_and_the_state() -> None:
    task = make_task()
    with pytest.raises(IllegalTransition, match="cannot succeed a task that is QUEUED"):
        task.succeed(T0, 1)


def test_failures_retry_with_capped_exponential_backoff_then_fail() -> None:
    task = make_task(max_attempts=3, base_delay=timedelta(seconds=2))
    now = T0
    waits = []
    for _ in range(2):
        task.start(now)
        task.fail(now, BOOM)
        assert task.status is TaskStatus.SCHEDULED
        waits.append(task.run_at - now)
        now = task.run_at
        task.enqueue(now)
    task.start(now)
    task.fail(now, BOOM)
    assert waits == [timedelta(seconds=2), timedelta(seconds=4)]
    assert (task.status, task.attempts, task.error) == (TaskStatus.FAILED, 3, BOOM)
    assert isinstance(task.pull_events()[-1], events.TaskFailed)


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(
        max_attempts=50, base_delay=timedelta(seconds=1), max_delay=timedelta(seconds=60)
    )
    assert policy.delay_after(1) == timedelta(seconds=1)
    assert policy.delay_after(40) == timedelta(seconds=60)


def test_a_permanent_failure_is_not_retried() -> None:
    task = make_task(max_attempts=5)
    task.start(T0)
    task.fail(T0, TaskError("Bad", "never works", retryable=False))
    assert (task.status, task.attempts) == (TaskStatus.FAILED, 1)


def test_cancel_of_a_running_task_is_a_request_confirmed_by_the_worker() -> None:
    task = make_task()
    task.start(T0)
    task.cancel(T0)
    assert (task.status, task.cancel_requested) == (TaskStatus.RUNNING, True)
    task.confirm_cancel(T0 + timedelta(seconds=1))
    assert task.status is TaskStatus.CANCELLED
    assert not task.cancel_requested


def test_a_failure_after_a_cancel_request_cancels_instead_of_retrying() -> None:
    task = make_task(max_attempts=3)
    task.start(T0)
    task.cancel(T0)
    task.fail(T0, BOOM)
    assert task.status is TaskStatus.CANCELLED


def test_a_cancelled_task_is_never_started() -> None:
    task = make_task()
    task.cancel(T0)
    with pytest.raises(IllegalTransition, match="cannot start a task that is CANCELLED"):
        task.start(T0)


def test_an_expiry_must_come_after_the_task_is_due() -> None:
    with pytest.raises(InvalidTask, match="must be after its submission"):
        make_task(expires_at=T0)
    with pytest.raises(InvalidTask, match="must be after its run_at"):
        make_task(run_at=T0 + timedelta(hours=1), expires_at=T0 + timedelta(minutes=30))
    later = make_task(expires_at=datetime(2030, 1, 1, 9, tzinfo=timezone(timedelta(hours=9))))
    assert later.expires_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_a_task_that_expired_waiting_fails_unrun_instead_of_starting() -> None:
    task = make_task(expires_at=T0 + timedelta(minutes=5))
    expiry = T0 + timedelta(minutes=5)
    with pytest.raises(IllegalTransition, match="it expires at"):
        task.expire(expiry - timedelta(seconds=1))
    with pytest.raises(IllegalTransition, match="cannot start a task that is QUEUED: it expired"):
        task.start(expiry)
    task.expire(expiry)
    assert (task.status, task.attempts, task.started_at) == (TaskStatus.FAILED, 0, None)
    assert task.error is not None
    assert (task.error.type, task.error.retryable) == ("Expired", False)
    [failed] = task.pull_events()
    assert isinstance(failed, events.TaskFailed)


def test_a_retry_that_would_come_after_the_expiry_is_not_scheduled() -> None:
    expiry = T0 + timedelta(seconds=30)
    task = make_task(max_attempts=3, base_delay=timedelta(seconds=10), expires_at=expiry)
    task.start(T0)
    task.fail(T0, BOOM)  # retried 10 s later, before the expiry
    assert task.status is TaskStatus.SCHEDULED
    task.enqueue(T0 + timedelta(seconds=10))
    task.start(T0 + timedelta(seconds=10))
    task.fail(T0 + timedelta(seconds=10), BOOM)  # 20 s later: at the expiry
    assert (task.status, task.error) == (TaskStatus.FAILED, BOOM)


def test_a_retry_by_hand_clears_the_expiry() -> None:
    task = make_task(expires_at=T0 + timedelta(minutes=5))
    task.expire(T0 + timedelta(minutes=5))
    task.retry(T0 + timedelta(minutes=6))
    assert (task.status, task.expires_at) == (TaskStatus.QUEUED, None)
    task.start(T0 + timedelta(minutes=6))


def test_only_a_finished_task_may_be_deleted() -> None:
    scheduled, queued, running = make_task(run_at=T0 + timedelta(hours=1)), make_task(), make_task()
    running.start(T0)
    for task in (scheduled, queued, running):
        refused = rf"cannot delete a task that is {task.status}: cancel it first"
        with pytest.raises(IllegalTransition, match=refused):
            task.check_deletable()
    succeeded, failed, cancelled = make_task(), make_task(max_attempts=1), make_task()
    for task in (succeeded, failed):
        task.start(T0)
    succeeded.succeed(T0, None)
    failed.fail(T0, BOOM)
    cancelled.cancel(T0)
    for task in (succeeded, failed, cancelled):
        task.check_deletable()


def test_a_manual_retry_gives_a_fresh_set_of_attempts() -> None:
    task = make_task(max_attempts=1)
    task.start(T0)
    task.fail(T0, BOOM)
    task.retry(T0)
    assert (task.status, task.attempts, task.error, task.finished_at) == (
        TaskStatus.QUEUED,
        0,
        None,
        None,
    )
    task.start(T0)
    assert task.attempts == 1


def test_a_task_queued_again_by_hand_or_handed_back_is_due_from_then() -> None:
    """A queued task has waited since the later of its creation and its run_at."""
    retried = make_task(max_attempts=1)
    retried.start(T0)
    retried.fail(T0, BOOM)
    retried.retry(T0 + timedelta(days=1))
    assert retried.run_at == T0 + timedelta(days=1)
    handed_back = make_task()
    handed_back.start(T0)
    handed_back.release(T0 + timedelta(minutes=10))
    assert handed_back.run_at == T0 + timedelta(minutes=10)


def test_the_lease_of_a_running_attempt_ends_after_its_timeout_and_grace() -> None:
    task = make_task(timeout=timedelta(seconds=10))
    task.start(T0)
    assert not task.lease_expired(T0 + timedelta(seconds=10) + LEASE_GRACE - timedelta(seconds=1))
    assert task.lease_expired(T0 + timedelta(seconds=10) + LEASE_GRACE)


def test_a_clock_that_goes_backwards_never_rewinds_the_task() -> None:
    task = make_task()
    task.start(T0 - timedelta(hours=1))
    assert task.updated_at == T0
    assert task.started_at == T0


@pytest.mark.parametrize(
    ("kind", "timeout"),
    [
        ("", 10),
        ("Upper", 10),
        ("x" * 101, 10),
        ("has space", 10),
        ("echo\n", 10),
        ("echo", 0),
        ("echo", 10**6),
    ],
)
def test_invalid_tasks_are_refused(kind: str, timeout: int) -> None:
    with pytest.raises(InvalidTask):
        make_task(kind=kind, timeout=timedelta(seconds=timeout))


def test_an_owner_name_longer_than_storage_keeps_is_refused() -> None:
    assert make_task(owner="o" * MAX_OWNER_LENGTH).owner == "o" * MAX_OWNER_LENGTH
    with pytest.raises(InvalidTask, match="owner of 1-200 characters"):
        make_task(owner="o" * (MAX_OWNER_LENGTH + 1))


def test_idempotency_keys_of_schedules_are_kept_for_the_tasks_of_schedules() -> None:
    """Taken by a client, such a key would become the task of the schedule's occurrence."""
    schedule_id = uuid.uuid4()
    key = f"schedule:{schedule_id}:20260105T120500Z"
    assert make_task(idempotency_key=key, schedule_id=schedule_id).idempotency_key == key
    with pytest.raises(InvalidTask, match="kept for the tasks of schedules"):
        make_task(idempotency_key=key)
    assert make_task(idempotency_key="schedules:1").idempotency_key == "schedules:1"


def test_a_timeout_under_a_microsecond_says_what_it_was_read_as() -> None:
    """1e-7 s is 0 in whole microseconds: "between 0 and 86400" would read as a riddle."""
    with pytest.raises(InvalidTask, match=r"over 0 \(in whole microseconds\).* got 0$"):
        make_task(timeout=timedelta(seconds=1e-7))


def test_max_attempts_is_bounded() -> None:
    with pytest.raises(InvalidTask):
        RetryPolicy(max_attempts=0)
    with pytest.raises(InvalidTask):
        RetryPolicy(max_attempts=101)
