"""The use cases on the in-memory adapters, wired by the real container with a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from dependency_injector import providers

from adapters.handlers.builtin import BUILTIN_KINDS
from adapters.handlers.registry import Kind, KindRegistry
from application import correlation
from application.errors import (
    IdempotencyKeyReused,
    InvalidPayload,
    RetryLater,
    StorageUnavailable,
    TaskNotFound,
    UnknownKind,
)
from application.messages import RunTaskMessage
from application.ports.task_repository import TaskQuery
from application.use_cases.cancel_task import CancelTask
from application.use_cases.delete_task import DeleteTask
from application.use_cases.get_task import GetTask
from application.use_cases.list_tasks import ListTasksHandler
from application.use_cases.retry_task import RetryTask
from application.use_cases.run_task import Outcome, RunTask
from application.use_cases.submit_task import SubmitTask
from domain.errors import IllegalTransition
from domain.values import TaskStatus
from entrypoints.container import Container, create_container
from entrypoints.settings import Settings
from tests.factories import FakeClock, HeldRelay, make_message
from tests.polling import eventually


class Gate:
    """A task kind that runs until the test opens the gate."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.started = asyncio.Event()
        self.runs = 0

    async def __call__(self, payload: Any, context: Any) -> Any:
        self.runs += 1
        self.started.set()
        await self.opened.wait()
        return {"ran": self.runs}


async def not_json(payload: Any, context: Any) -> Any:
    return {"value": object()}


async def unstorable_result(payload: Any, context: Any) -> Any:
    if "depth" in payload:
        nested: Any = []
        for _ in range(payload["depth"] - 1):
            nested = [nested]
        return nested
    if "surrogate" in payload:
        return {"name": b"caf\xe9".decode(errors="surrogateescape")}
    return {"lines": ["ok", "bad\x00byte"]}


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise ValueError("no text for this error")


async def unprintable_error(payload: Any, context: Any) -> Any:
    raise UnprintableError


async def process_ending(payload: Any, context: Any) -> Any:
    if payload.get("interrupt"):
        raise KeyboardInterrupt
    sys.exit(payload.get("code", 0))


async def deaf(payload: Any, context: Any) -> Any:
    """Swallows every cancellation and returns once its time is up."""
    deadline = asyncio.get_running_loop().time() + payload["seconds"]
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.01)
    return {"finished": True}


async def retry_later(payload: Any, context: Any) -> Any:
    wait = payload["wait"]
    raise RetryLater("not now", timedelta(days=wait) if type(wait) is int else wait)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def container_for(clock: FakeClock, **settings: Any) -> Container:
    container = create_container(Settings(storage_url="memory://", **settings))
    container.clock.override(providers.Object(clock))
    return container


@pytest.fixture
def app(gate: Gate, clock: FakeClock) -> Container:
    return app_for(gate, clock)


def app_for(gate: Gate, clock: FakeClock, **settings: Any) -> Container:
    """Messages stay in the outbox until a test runs the relay's sweep, which takes them
    however young they are."""
    container = container_for(
        clock,
        cancel_poll_seconds=0.01,
        retry_base_seconds=10,
        relay_sweep_after_seconds=0,
        **settings,
    )
    container.publish_committed.override(providers.Object(HeldRelay()))
    container.registry.override(
        providers.Singleton(
            KindRegistry,
            [
                *BUILTIN_KINDS,
                Kind("gate", gate),
                Kind("not-json", not_json),
                Kind("unstorable", unstorable_result),
                Kind("unprintable-error", unprintable_error),
                Kind("process-ending", process_ending),
                Kind("retry-later", retry_later),
                Kind("deaf", deaf),
            ],
        )
    )
    return container


async def submit(app: Container, kind: str = "echo", **fields: Any) -> Any:
    command = SubmitTask(
        owner="alice", kind=kind, payload=fields.pop("payload", {"x": 1}), **fields
    )
    return (await app.submit_task()(command)).task


async def run(app: Container, task_id: Any) -> Any:
    return await app.run_task()(RunTask(task_id))


async def store_as_started(app: Container, task_id: Any, worker_id: str | None = None) -> None:
    """Stores ``task_id`` as started by ``worker_id``, as a claim that no run of this test
    holds."""
    async with app.uow()() as uow:
        claimed = await uow.tasks.get(task_id)
        claimed.start(app.clock().now(), worker_id)
        await uow.tasks.save(claimed)
        await uow.commit()


async def status_of(app: Container, task_id: Any) -> Any:
    return await app.get_task()(GetTask("alice", task_id))


async def test_a_submitted_task_runs_to_success_once(app: Container) -> None:
    task = await submit(app, payload={"hello": "world"})
    assert (await run(app, task.id)).outcome is Outcome.RAN
    again = await run(app, task.id)
    assert again.outcome is Outcome.NOTHING_TO_DO
    stored = await status_of(app, task.id)
    assert (stored.status, stored.result, stored.attempts) == (
        TaskStatus.SUCCEEDED,
        {"hello": "world"},
        1,
    )


async def test_submitting_writes_one_dispatch_message_to_the_outbox(app: Container) -> None:
    task = await submit(app)
    scheduled = await submit(app, run_at=app.clock().now() + timedelta(hours=1))
    async with app.uow()() as uow:
        pending = await uow.outbox.pending(10)
    assert [RunTaskMessage.decode(m.body).task_id for m in pending] == [task.id]
    assert scheduled.status is TaskStatus.SCHEDULED


async def test_a_failing_task_is_retried_after_its_backoff_then_fails(
    app: Container, clock: FakeClock
) -> None:
    task = await submit(app, "fail", payload={"message": "boom"}, max_attempts=2)
    await run(app, task.id)
    retrying = await status_of(app, task.id)
    assert retrying.status is TaskStatus.SCHEDULED
    assert retrying.run_at == clock.now() + timedelta(seconds=10)
    assert await app.promote_due_tasks()() == 0
    clock.advance(seconds=10)
    assert await app.promote_due_tasks()() == 1
    await run(app, task.id)
    failed = await status_of(app, task.id)
    assert (failed.status, failed.attempts, failed.error.message) == (
        TaskStatus.FAILED,
        2,
        "boom",
    )


async def test_a_failed_attempt_is_logged_with_its_number_error_and_next_time(
    app: Container, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    task = await submit(app, "fail", payload={"message": "boom"}, max_attempts=2)
    with caplog.at_level(logging.INFO, "taskport.events"):
        await run(app, task.id)
        retry_at = clock.advance(seconds=10)
        await app.promote_due_tasks()()
        await run(app, task.id)
    lines = [record.getMessage() for record in caplog.records if record.name == "taskport.events"]
    assert (
        f"TaskRetryScheduled task={task.id} kind=fail attempt=1 error=RuntimeError "
        f"retry_at={retry_at.isoformat()}"
    ) in lines
    assert f"TaskFailed task={task.id} kind=fail attempt=2 error=RuntimeError" in lines


async def test_a_task_queued_by_a_sweep_is_dispatched_with_the_request_that_submitted_it(
    app: Container, clock: FakeClock
) -> None:
    """Its run_at and its retries come in a sweep, outside any request: each run message
    still names the submit's request, which the worker's log lines then carry."""
    token = correlation.request_id.set("req-7")
    try:
        later = await submit(app, run_at=clock.now() + timedelta(minutes=1))
        failing = await submit(app, "fail", payload={}, max_attempts=2)
    finally:
        correlation.request_id.reset(token)
    await run(app, failing.id)
    clock.advance(minutes=1)
    assert await app.promote_due_tasks()() == 2
    async with app.uow()() as uow:
        sent = [RunTaskMessage.decode(message.body) for message in await uow.outbox.pending(10)]
    assert Counter((m.task_id, m.request_id) for m in sent) == Counter(
        {(failing.id, "req-7"): 2, (later.id, "req-7"): 1}
    )


async def test_the_queue_age_counts_from_when_a_task_was_due(
    app: Container, clock: FakeClock
) -> None:
    """A task scheduled an hour ahead and queued when its time came, and a failed one
    retried by hand an hour later, have just started to wait."""
    scheduled = await submit(app, run_at=clock.now() + timedelta(hours=1))
    failed = await submit(app, "fail", payload={}, max_attempts=1)
    await run(app, failed.id)
    clock.advance(seconds=3600)
    assert await app.promote_due_tasks()() == 1
    await app.retry_task()(RetryTask("alice", failed.id))
    queued = {task.id for task in (await app.list_tasks()(TaskQuery("alice", limit=10))).items}
    assert queued == {scheduled.id, failed.id}
    stats = await app.get_stats()("alice")
    assert stats.oldest_queued_age == timedelta(0)


async def test_a_task_delivered_after_its_expiry_fails_without_running(
    app: Container, gate: Gate, clock: FakeClock
) -> None:
    expiry = clock.now() + timedelta(seconds=30)
    late = await submit(app, "gate", expires_at=expiry)
    in_time = await submit(app, "echo", expires_at=expiry)
    assert (await run(app, in_time.id)).outcome is Outcome.RAN
    clock.advance(seconds=30)
    result = await run(app, late.id)
    assert (result.outcome, result.status) == (Outcome.RAN, TaskStatus.FAILED)
    assert gate.runs == 0
    expired = await status_of(app, late.id)
    assert expired.error.type == "Expired" and expired.attempts == 0
    assert (await status_of(app, in_time.id)).status is TaskStatus.SUCCEEDED


async def test_a_duplicate_delivery_of_a_running_task_waits_for_its_lease(
    app: Container, gate: Gate
) -> None:
    task = await submit(app, "gate", timeout_seconds=60)
    first = asyncio.create_task(run(app, task.id))
    await asyncio.wait_for(gate.started.wait(), 5)
    duplicate = await run(app, task.id)
    assert duplicate.outcome is Outcome.BUSY
    assert timedelta(seconds=60) < duplicate.retry_after <= timedelta(seconds=90)
    gate.opened.set()
    assert (await first).outcome is Outcome.RAN
    assert gate.runs == 1


async def test_a_lost_attempt_is_failed_and_retried_when_its_lease_ends(
    app: Container, clock: FakeClock
) -> None:
    task = await submit(app, timeout_seconds=5)
    await store_as_started(app, task.id)
    clock.advance(seconds=60)
    assert (await run(app, task.id)).status is TaskStatus.SCHEDULED
    lost = await status_of(app, task.id)
    assert lost.error.type == "AttemptLost"
    clock.advance(seconds=60)
    await app.promote_due_tasks()()
    await run(app, task.id)
    done = await status_of(app, task.id)
    assert (done.status, done.attempts) == (TaskStatus.SUCCEEDED, 2)


async def test_an_attempt_over_its_timeout_fails(app: Container) -> None:
    task = await submit(app, "sleep", payload={"seconds": 5}, timeout_seconds=0.05, max_attempts=1)
    await run(app, task.id)
    failed = await status_of(app, task.id)
    assert (failed.status, failed.error.type) == (TaskStatus.FAILED, "Timeout")


async def test_a_handler_deaf_to_its_timeout_fails_it_though_it_returns_late(
    app: Container,
) -> None:
    task = await submit(app, "deaf", payload={"seconds": 0.3}, timeout_seconds=0.05)
    await run(app, task.id)
    failed = await status_of(app, task.id)
    assert (failed.status, failed.error.type, failed.result) == (
        TaskStatus.SCHEDULED,  # its retry, after the backoff
        "Timeout",
        None,
    )


async def test_a_handler_deaf_to_a_cancel_is_cancelled_though_it_returns(
    app: Container,
) -> None:
    task = await submit(app, "deaf", payload={"seconds": 0.5})
    running = asyncio.create_task(run(app, task.id))
    await eventually(lambda: is_running(app, task.id))
    await app.cancel_task()(CancelTask("alice", task.id))
    assert (await asyncio.wait_for(running, 5)).status is TaskStatus.CANCELLED
    assert (await status_of(app, task.id)).result is None


async def is_running(app: Container, task_id: Any) -> bool:
    return (await status_of(app, task_id)).status is TaskStatus.RUNNING


async def test_cancel_reaches_the_running_handler(app: Container, gate: Gate) -> None:
    task = await submit(app, "gate")
    running = asyncio.create_task(run(app, task.id))
    await asyncio.wait_for(gate.started.wait(), 5)
    requested = await app.cancel_task()(CancelTask("alice", task.id))
    assert (requested.status, requested.cancel_requested) == (TaskStatus.RUNNING, True)
    assert (await asyncio.wait_for(running, 5)).status is TaskStatus.CANCELLED
    assert not gate.opened.is_set()


async def test_a_result_is_recorded_over_a_cancel_request_the_watcher_did_not_see(
    app: Container, gate: Gate
) -> None:
    app.settings.override(
        providers.Object(Settings(storage_url="memory://", cancel_poll_seconds=60))
    )
    task = await submit(app, "gate")
    running = asyncio.create_task(run(app, task.id))
    await asyncio.wait_for(gate.started.wait(), 5)
    await app.cancel_task()(CancelTask("alice", task.id))
    gate.opened.set()
    assert (await asyncio.wait_for(running, 5)).status is TaskStatus.SUCCEEDED
    stored = await status_of(app, task.id)
    assert (stored.result, stored.cancel_requested) == ({"ran": 1}, False)


async def test_an_error_whose_message_cannot_be_read_fails_the_attempt(app: Container) -> None:
    task = await submit(app, "unprintable-error", max_attempts=1)
    assert (await run(app, task.id)).status is TaskStatus.FAILED
    failed = await status_of(app, task.id)
    assert failed.error.type == "UnprintableError"
    assert "could not be read" in failed.error.message


@pytest.mark.parametrize(
    ("payload", "error_type"),
    [
        ({"code": 0}, "SystemExit"),
        ({"code": 1}, "SystemExit"),
        ({"interrupt": True}, "KeyboardInterrupt"),
    ],
)
async def test_a_handler_ending_the_process_fails_its_attempt_and_the_worker_runs_on(
    app: Container, payload: dict[str, Any], error_type: str
) -> None:
    task = await submit(app, "process-ending", payload=payload, max_attempts=1)
    assert (await run(app, task.id)).status is TaskStatus.FAILED
    failed = await status_of(app, task.id)
    assert failed.error.type == error_type
    after = await submit(app)
    assert (await run(app, after.id)).status is TaskStatus.SUCCEEDED


@pytest.mark.parametrize("wait", [10**7, 367, "5", 5.0])
async def test_a_retry_asked_for_past_a_year_or_not_as_a_timedelta_fails_the_task(
    app: Container, wait: Any
) -> None:
    task = await submit(app, "retry-later", payload={"wait": wait})
    assert (await run(app, task.id)).status is TaskStatus.FAILED
    failed = await status_of(app, task.id)
    assert (failed.error.type, failed.error.retryable) == ("InvalidRetryAfter", False)


async def test_a_retry_asked_for_in_a_year_waits_a_year(app: Container) -> None:
    task = await submit(app, "retry-later", payload={"wait": 365})
    assert (await run(app, task.id)).status is TaskStatus.SCHEDULED
    waiting = await status_of(app, task.id)
    assert waiting.run_at - app.clock().now() == timedelta(days=365)


async def test_a_result_that_is_not_json_fails_the_task(app: Container) -> None:
    task = await submit(app, "not-json")
    await run(app, task.id)
    failed = await status_of(app, task.id)
    assert (failed.status, failed.error.type) == (TaskStatus.FAILED, "InvalidResult")


async def test_a_result_no_storage_can_keep_fails_the_task_at_once(app: Container) -> None:
    task = await submit(app, "unstorable")
    await run(app, task.id)
    failed = await status_of(app, task.id)
    assert (failed.status, failed.attempts, failed.error.retryable) == (
        TaskStatus.FAILED,
        1,
        False,
    )
    assert failed.error.message == (
        "the result cannot be stored: result.lines[1]: a string holds the NUL character (\\u0000)"
    )


async def test_a_result_that_is_not_unicode_text_fails_the_task_at_once(app: Container) -> None:
    task = await submit(app, "unstorable", payload={"surrogate": True})
    await run(app, task.id)
    failed = await status_of(app, task.id)
    assert (failed.status, failed.error.type) == (TaskStatus.FAILED, "InvalidResult")
    assert failed.error.message.endswith(
        "result.name: a string holds a lone surrogate, which is not Unicode text"
    )


@pytest.mark.parametrize("depth", [101, 5000])
async def test_a_result_nested_too_deep_fails_the_task_at_once(app: Container, depth: int) -> None:
    task = await submit(app, "unstorable", payload={"depth": depth})
    await run(app, task.id)
    failed = await status_of(app, task.id)
    assert (failed.status, failed.attempts, failed.error.type) == (
        TaskStatus.FAILED,
        1,
        "InvalidResult",
    )
    assert failed.error.message == (
        "the result cannot be stored: result[0][0][0][0][0][0][0][0][0][0]…: "
        "nested more than 100 levels deep"
    )


async def test_a_result_is_measured_in_the_bytes_of_its_json(app: Container) -> None:
    # 500,000 "é" are 1,000,002 bytes of JSON in UTF-8, under the limit of 1 MiB; escaped
    # as \u00e9 they would be three times as many.
    under = await submit(app, payload="é" * 500_000)
    over = await submit(app, payload="é" * 600_000)
    await run(app, under.id)
    await run(app, over.id)
    assert (await status_of(app, under.id)).status is TaskStatus.SUCCEEDED
    failed = await status_of(app, over.id)
    assert (failed.status, failed.error.type, failed.error.message) == (
        TaskStatus.FAILED,
        "ResultTooLarge",
        "the result is 1200002 bytes, over the limit of 1048576",
    )


async def test_a_result_is_measured_in_its_json_without_spaces_between_items(
    app: Container,
) -> None:
    # 400,000 zeros are 800,001 bytes of JSON as they are served ("[0,0,…]"); with a space
    # after each comma they would be 1,200,000, over the limit of 1 MiB.
    under = await submit(app, payload=[0] * 400_000)
    over = await submit(app, payload=[0] * 600_000)
    await run(app, under.id)
    await run(app, over.id)
    assert (await status_of(app, under.id)).status is TaskStatus.SUCCEEDED
    failed = await status_of(app, over.id)
    assert (failed.status, failed.error.type, failed.error.message) == (
        TaskStatus.FAILED,
        "ResultTooLarge",
        "the result is 1200001 bytes, over the limit of 1048576",
    )


async def test_an_idempotent_repeat_returns_the_first_task(app: Container) -> None:
    command = SubmitTask("alice", "echo", {"a": 1}, idempotency_key="k1")
    first = await app.submit_task()(command)
    repeat = await app.submit_task()(command)
    assert (first.created, repeat.created) == (True, False)
    assert repeat.task.id == first.task.id
    with pytest.raises(IdempotencyKeyReused):
        await app.submit_task()(SubmitTask("alice", "echo", {"a": 2}, idempotency_key="k1"))
    other_owner = await app.submit_task()(SubmitTask("bob", "echo", {"a": 1}, idempotency_key="k1"))
    assert other_owner.created


async def test_an_expiry_is_part_of_an_idempotent_request(app: Container) -> None:
    expiry = app.clock().now() + timedelta(hours=1)
    expiring = SubmitTask("alice", "echo", {"a": 1}, idempotency_key="k", expires_at=expiry)
    first = await app.submit_task()(expiring)
    repeat = await app.submit_task()(expiring)
    assert (first.created, repeat.created, repeat.task.expires_at) == (True, False, expiry)
    later = SubmitTask(
        "alice", "echo", {"a": 1}, idempotency_key="k", expires_at=expiry + timedelta(hours=1)
    )
    with pytest.raises(IdempotencyKeyReused):
        await app.submit_task()(later)
    with pytest.raises(IdempotencyKeyReused):
        await app.submit_task()(SubmitTask("alice", "echo", {"a": 1}, idempotency_key="k"))


async def test_racing_repeats_of_one_key_create_one_task(app: Container) -> None:
    command = SubmitTask("alice", "echo", {"a": 1}, idempotency_key="race")
    results = await asyncio.gather(*(app.submit_task()(command) for _ in range(10)))
    assert len({result.task.id for result in results}) == 1
    assert sum(result.created for result in results) == 1


async def test_unknown_kinds_and_bad_payloads_are_refused_at_submit(app: Container) -> None:
    with pytest.raises(UnknownKind) as unknown:
        await submit(app, "nope")
    assert "echo" in unknown.value.known
    with pytest.raises(InvalidPayload, match="seconds"):
        await submit(app, "sleep", payload={"seconds": -1})


async def test_another_owners_task_is_not_found(app: Container) -> None:
    task = await submit(app)
    with pytest.raises(TaskNotFound):
        await app.get_task()(GetTask("mallory", task.id))


async def test_a_task_is_deleted_once_it_has_finished_and_then_is_not_found(
    app: Container,
) -> None:
    task = await submit(app, idempotency_key="once")
    delete = app.delete_task()
    with pytest.raises(IllegalTransition, match="cannot delete a task that is QUEUED: cancel"):
        await delete(DeleteTask("alice", task.id))
    await run(app, task.id)
    with pytest.raises(TaskNotFound):
        await delete(DeleteTask("mallory", task.id))
    await delete(DeleteTask("alice", task.id))
    with pytest.raises(TaskNotFound):
        await status_of(app, task.id)
    with pytest.raises(TaskNotFound):
        await delete(DeleteTask("alice", task.id))
    again = await submit(app, idempotency_key="once")  # the key names a new task now
    assert again.id != task.id


async def test_a_wait_ends_as_soon_as_the_task_finishes_in_this_process(
    app: Container, gate: Gate
) -> None:
    task = await submit(app, "gate")
    waiting = asyncio.create_task(app.get_task()(GetTask("alice", task.id, timedelta(seconds=60))))
    running = asyncio.create_task(run(app, task.id))
    await asyncio.wait_for(gate.started.wait(), 5)
    assert not waiting.done()
    gate.opened.set()
    finished = await asyncio.wait_for(waiting, 5)  # not after the next read, up to a second
    assert (finished.status, finished.result) == (TaskStatus.SUCCEEDED, {"ran": 1})
    await running


async def test_a_wait_reads_again_for_a_task_finished_elsewhere(app: Container) -> None:
    task = await submit(app)
    waiting = asyncio.create_task(app.get_task()(GetTask("alice", task.id, timedelta(seconds=60))))
    async with app.uow()() as uow:  # as another process would: nobody here hears of it
        elsewhere = await uow.tasks.get(task.id)
        elsewhere.cancel(app.clock().now())
        await uow.tasks.save(elsewhere)
        await uow.commit()
    assert (await asyncio.wait_for(waiting, 5)).status is TaskStatus.CANCELLED


async def test_a_wait_answers_the_unfinished_task_once_it_is_over(app: Container) -> None:
    task = await submit(app)
    loop = asyncio.get_running_loop()
    started = loop.time()
    unfinished = await app.get_task()(GetTask("alice", task.id, timedelta(seconds=0.3)))
    assert unfinished.status is TaskStatus.QUEUED
    assert loop.time() - started >= 0.3


@pytest.mark.parametrize("seconds", [-1, 61])
def test_a_wait_lasts_at_most_a_minute(seconds: float) -> None:
    with pytest.raises(ValueError, match="0 to 60 seconds"):
        GetTask("alice", uuid.uuid4(), timedelta(seconds=seconds))


async def test_list_pages_know_whether_more_follow(app: Container) -> None:
    tasks = [await submit(app) for _ in range(5)]
    first = await app.list_tasks()(TaskQuery("alice", limit=3))
    second = await app.list_tasks()(TaskQuery("alice", limit=3, before=first.next_before))
    assert [t.id for t in (*first.items, *second.items)] == [t.id for t in reversed(tasks)]
    assert second.next_before is None


@pytest.mark.parametrize("limit", [3, 1000])
async def test_a_page_ends_early_once_its_payloads_pass_the_byte_limit(
    app: Container, limit: int
) -> None:
    """Each page holds the tasks whose payloads and results fit in 1,000 bytes of JSON
    (one task at least, however large), and the pages still give every task once, in
    order."""
    lengths = [300, 300, 300, 2000, 100, 100]
    tasks = [await submit(app, payload="x" * length) for length in lengths]
    list_tasks = ListTasksHandler(app.uow(), max_page_bytes=1000)
    pages, before = [], None
    while True:
        page = await list_tasks(TaskQuery("alice", limit=limit, before=before))
        pages.append(list(page.items))
        if (before := page.next_before) is None:
            break
    assert [[len(task.payload) for task in items] for items in pages] == [
        [100, 100],
        [2000],
        [300, 300, 300],
    ]
    listed = [task.id for items in pages for task in items]
    assert listed == [task.id for task in reversed(tasks)]


async def test_a_page_counts_the_bytes_of_its_json_in_utf8(app: Container) -> None:
    # 150 "é" are 302 bytes of JSON (902 escaped as \u00e9): three such payloads, and
    # their results of null, fit in 1,000 bytes.
    for _ in range(3):
        await submit(app, payload="é" * 150)
    page = await ListTasksHandler(app.uow(), max_page_bytes=1000)(TaskQuery("alice", limit=10))
    assert (len(page.items), page.next_before) == (3, None)


async def test_the_relay_publishes_pending_messages_once(app: Container) -> None:
    await submit(app)
    await submit(app)
    assert await app.relay_outbox()() == 2
    assert await app.relay_outbox()() == 0
    assert app.in_process_queue().ready_count == 2


async def test_a_committed_message_is_published_at_once_and_marked_sent(
    clock: FakeClock,
) -> None:
    app = container_for(clock)
    task = await submit(app)
    queue = app.in_process_queue()
    await eventually(lambda: queue.ready_count == 1)
    await app.publish_committed().drain()
    async with app.uow()() as uow:
        assert await uow.outbox.backlog() == 0
    clock.advance(hours=1)
    assert await app.relay_outbox()() == 0  # nothing left for the sweep
    assert (await status_of(app, task.id)).status is TaskStatus.QUEUED


async def test_the_sweep_leaves_young_messages_to_the_fast_path(clock: FakeClock) -> None:
    app = container_for(clock, relay_sweep_after_seconds=5)
    app.publish_committed.override(providers.Object(HeldRelay()))
    await submit(app)
    clock.advance(seconds=4)
    assert await app.relay_outbox()() == 0
    clock.advance(seconds=1)
    assert await app.relay_outbox()() == 1
    assert app.in_process_queue().ready_count == 1


async def test_a_failed_fast_path_publish_leaves_the_message_to_the_sweep(
    clock: FakeClock,
) -> None:
    class DownPublisher:
        async def publish(self, messages: Any) -> None:
            raise StorageUnavailable("down")

    app = container_for(clock, relay_sweep_after_seconds=5)
    app.publisher.override(providers.Object(DownPublisher()))
    await submit(app)
    await app.publish_committed().drain()
    app.publisher.reset_override()
    async with app.uow()() as uow:
        assert await uow.outbox.backlog() == 1
    clock.advance(seconds=5)
    assert await app.relay_outbox()() == 1
    assert app.in_process_queue().ready_count == 1


async def test_a_publish_failure_keeps_messages_in_the_outbox(app: Container) -> None:
    class DownPublisher:
        async def publish(self, messages: Any) -> None:
            raise StorageUnavailable("down")

    await submit(app)
    app.publisher.override(providers.Object(DownPublisher()))
    try:
        with pytest.raises(StorageUnavailable):
            await app.relay_outbox()()
    finally:
        app.publisher.reset_override()
    async with app.uow()() as uow:
        assert len(await uow.outbox.pending(10)) == 1


class FakeDelivery:
    def __init__(self, body: bytes, delivery_count: int = 1) -> None:
        self.message_id = "m-1"
        self.body = body
        self.delivery_count = delivery_count
        self.settled: tuple[str, Any] | None = None

    async def ack(self) -> None:
        self.settled = ("ack", None)

    async def nack(self, delay: timedelta) -> None:
        self.settled = ("nack", delay)

    async def reject(self, reason: str) -> None:
        self.settled = ("reject", reason)


async def test_a_poison_message_without_an_id_is_logged_as_such(
    app: Container, caplog: pytest.LogCaptureFixture
) -> None:
    poison = FakeDelivery(b"not json")
    poison.message_id = ""
    with caplog.at_level(logging.ERROR, logger="taskport.worker"):
        await app.process_delivery()(poison)
    assert poison.settled is not None and poison.settled[0] == "reject"
    assert "dead-lettering message without an id: " in caplog.text


async def test_deliveries_are_settled_by_what_running_them_found(app: Container) -> None:
    process = app.process_delivery()
    poison = FakeDelivery(b"\xff not json")
    await process(poison)
    assert poison.settled[0] == "reject"

    unknown = FakeDelivery(RunTaskMessage(make_message().id).encode())
    await process(unknown)
    assert unknown.settled[0] == "reject"

    task = await submit(app)
    good = FakeDelivery(RunTaskMessage(task.id).encode())
    await process(good)
    assert good.settled == ("ack", None)
    assert (await status_of(app, task.id)).status is TaskStatus.SUCCEEDED

    too_often = FakeDelivery(RunTaskMessage(task.id).encode(), delivery_count=1000)
    await process(too_often)
    assert too_often.settled[0] == "reject"


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000])
async def test_a_body_nested_too_deep_to_read_is_dead_lettered(app: Container, body: bytes) -> None:
    delivery = FakeDelivery(body)
    await app.process_delivery()(delivery)
    assert delivery.settled == ("reject", f"not a run-task message: {body[:200]!r}")


@pytest.mark.parametrize("given", ["r" * 129, "two\nlines", "req-42\n", "", "with space", 42])
def test_a_run_message_drops_a_request_id_unfit_for_the_logs(given: object) -> None:
    task_id = uuid.uuid4()
    body = json.dumps({"task_id": str(task_id), "request_id": given}).encode()
    assert RunTaskMessage.decode(body) == RunTaskMessage(task_id, None)


def test_a_run_message_keeps_the_request_id_of_its_submit() -> None:
    task_id = uuid.uuid4()
    body = RunTaskMessage(task_id, "req-42:a.b_C").encode()
    assert RunTaskMessage.decode(body) == RunTaskMessage(task_id, "req-42:a.b_C")


async def test_a_delivery_is_nacked_while_storage_is_down_later_each_time(
    app: Container,
) -> None:
    task = await submit(app)

    def down() -> Any:
        raise StorageUnavailable("connection refused", retry_after_seconds=1)

    app.storage().unit_of_work = down  # type: ignore[method-assign]
    delays = []
    for count in range(1, 11):
        delivery = FakeDelivery(RunTaskMessage(task.id).encode(), delivery_count=count)
        await app.process_delivery()(delivery)
        assert delivery.settled is not None and delivery.settled[0] == "nack"
        delays.append(delivery.settled[1].total_seconds())
    # Two minutes of outage are eight deliveries, far from the 100 that make a poison message.
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]


async def test_an_outage_is_logged_once_in_a_hundred_deliveries_and_its_end_once(
    app: Container, caplog: pytest.LogCaptureFixture
) -> None:
    outage = Outage(app)
    task = await submit(app)
    process = app.process_delivery()
    outage.down = True
    with caplog.at_level(logging.INFO, logger="taskport.worker"):
        for _ in range(250):
            await process(FakeDelivery(RunTaskMessage(task.id).encode()))
        outage.down = False
        delivery = FakeDelivery(RunTaskMessage(task.id).encode())
        await process(delivery)
    assert delivery.settled == ("ack", None)
    ours = [record for record in caplog.records if record.name == "taskport.worker"]
    warned = [record.getMessage() for record in ours if record.levelname == "WARNING"]
    assert [line.rsplit("(", 1)[1] for line in warned] == [
        "1 deliveries held back in this outage)",
        "100 deliveries held back in this outage)",
        "200 deliveries held back in this outage)",
    ]
    infos = [record.getMessage() for record in ours if record.levelname == "INFO"]
    assert infos == ["deliveries run again after 250 deliveries were held back"]


class Outage:
    """Makes the storage of ``app`` unavailable while ``down`` is set; counts the units of
    work refused. Installed before the use cases are built (they keep the factory).

    A unit of work is refused as it opens, or (``at_commit``) only as it commits: after the
    use case changed the tasks it writes, as when the connection drops mid-write."""

    def __init__(self, app: Container, at_commit: bool = False) -> None:
        storage = app.storage()
        self.down = False
        self.refused = 0
        factory = storage.unit_of_work

        def refuse() -> None:
            self.refused += 1
            raise StorageUnavailable("connection refused")

        def unit_of_work() -> Any:
            if self.down and not at_commit:
                refuse()
            uow = factory()
            commit = uow.commit

            async def commit_unless_down(*, durable: bool = True) -> None:
                if self.down:
                    refuse()
                await commit(durable=durable)

            uow.commit = commit_unless_down
            return uow

        storage.unit_of_work = unit_of_work  # type: ignore[method-assign]


@pytest.fixture(params=["refused-at-open", "refused-at-commit"])
def at_commit(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "refused-at-commit")


async def finished_in_an_outage(
    app: Container, gate: Gate, at_commit: bool
) -> tuple[Outage, Any, Any]:
    """A gate task whose handler finishes while storage is down: the outage, the task and
    its run (under way)."""
    outage = Outage(app, at_commit)
    app.run_task.add_kwargs(write_retry_delay=timedelta(milliseconds=1))
    task = await submit(app, "gate", timeout_seconds=60)
    running = asyncio.create_task(run(app, task.id))
    await asyncio.wait_for(gate.started.wait(), 5)
    outage.down = True
    gate.opened.set()
    return outage, task, running


async def test_an_outcome_is_written_once_storage_is_back_without_running_again(
    app: Container, gate: Gate, at_commit: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="taskport.worker"):
        outage, task, running = await finished_in_an_outage(app, gate, at_commit)
        await eventually(lambda: outage.refused >= 3)
        assert not running.done()
        outage.down = False
        assert (await running).outcome is Outcome.RAN
    stored = await status_of(app, task.id)
    assert (stored.status, stored.attempts, gate.runs) == (TaskStatus.SUCCEEDED, 1, 1)
    # One warning for the outage, not one per try; and its end.
    ours = [record for record in caplog.records if record.name == "taskport.worker"]
    warned = [record.getMessage() for record in ours if record.levelname == "WARNING"]
    assert len(warned) == 1 and warned[0].endswith("(1 outcomes held back in this outage)")
    [over] = [record.getMessage() for record in ours if record.levelname == "INFO"]
    assert over.startswith("outcomes written after ")


async def test_an_outcome_unwritten_when_the_lease_ends_is_given_up(
    app: Container, gate: Gate, clock: FakeClock, at_commit: bool
) -> None:
    outage, _, running = await finished_in_an_outage(app, gate, at_commit)
    await eventually(lambda: outage.refused >= 1)
    clock.advance(hours=1)
    with pytest.raises(StorageUnavailable):
        await running


async def test_a_redelivered_attempt_this_worker_no_longer_runs_is_retried_at_once(
    app: Container, clock: FakeClock
) -> None:
    task = await submit(app, timeout_seconds=60)
    await store_as_started(app, task.id, app.worker_id())
    # No lease has ended: another worker's attempt would be BUSY (see above).
    assert (await run(app, task.id)).status is TaskStatus.SCHEDULED
    lost = await status_of(app, task.id)
    assert (lost.error.type, lost.attempts) == ("AttemptLost", 1)
    clock.advance(seconds=60)
    await app.promote_due_tasks()()
    await run(app, task.id)
    done = await status_of(app, task.id)
    assert (done.status, done.attempts) == (TaskStatus.SUCCEEDED, 2)


async def test_a_duplicate_claimed_in_another_batch_at_once_waits_for_the_first(
    app: Container, clock: FakeClock
) -> None:
    """Two deliveries of one task, claimed by two batches that both read it QUEUED: the
    batch that loses the race must not stop counting the winner's run as running here,
    or its retry would take that run for one this worker dropped."""
    storage = app.storage()
    factory = storage.unit_of_work
    holding, entered, both_entered = False, 0, asyncio.Event()

    def unit_of_work() -> Any:
        uow = factory()
        commit = uow.commit

        async def commit_once_both_have_read(*, durable: bool = True) -> None:
            nonlocal entered
            if holding and entered < 2:
                entered += 1
                if entered == 2:
                    both_entered.set()
                await asyncio.wait_for(both_entered.wait(), 5)
            await commit(durable=durable)

        uow.commit = commit_once_both_have_read
        return uow

    storage.unit_of_work = unit_of_work  # type: ignore[method-assign]
    task = await submit(app)
    holding = True
    first = asyncio.create_task(run(app, task.id))
    await eventually(lambda: entered == 1)
    clock.advance(seconds=1)  # the two claims differ, as two moments do
    second = asyncio.create_task(run(app, task.id))
    results = await asyncio.gather(first, second)
    assert [result.outcome for result in results] == [Outcome.RAN, Outcome.BUSY]
    done = await status_of(app, task.id)
    assert (done.status, done.attempts) == (TaskStatus.SUCCEEDED, 1)


def runtime_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the runtime warned of: other lines are captured too when an earlier test left
    the logging of the process at INFO (the CLI's configure_logging)."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "taskport.runtime" and record.levelno >= logging.WARNING
    ]


async def test_the_embedded_worker_runs_submitted_tasks(
    app: Container, caplog: pytest.LogCaptureFixture
) -> None:
    from entrypoints.worker.runtime import Runtime

    runtime = Runtime(app, consume=True)
    await runtime.start()
    try:
        task = await submit(app)

        async def succeeded() -> bool:
            return (await status_of(app, task.id)).status is TaskStatus.SUCCEEDED

        await eventually(succeeded)
    finally:
        caplog.set_level(logging.WARNING, "taskport.runtime")
        await runtime.stop()
    assert runtime_warnings(caplog) == []  # nothing was running: nothing is handed back


async def test_a_worker_shutting_down_hands_its_task_back(app: Container, gate: Gate) -> None:
    task = await submit(app, "gate")
    running = asyncio.create_task(run(app, task.id))
    await asyncio.wait_for(gate.started.wait(), 5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    handed_back = await status_of(app, task.id)
    assert (handed_back.status, handed_back.attempts) == (TaskStatus.QUEUED, 0)
    gate.opened.set()
    await run(app, task.id)
    assert (await status_of(app, task.id)).status is TaskStatus.SUCCEEDED


class SlowToWrite:
    """Makes each commit of ``app``'s storage take a while once ``slow`` is set, as on a
    disk (``slow_commits`` counts those begun), and notes the statuses and attempts of the
    stored tasks as the storage closes. Installed before the use cases are built, as they
    keep the storage's methods."""

    def __init__(self, app: Container) -> None:
        self.slow = False
        self.slow_commits = 0
        self.at_close: list[list[tuple[TaskStatus, int]]] = []
        storage = app.storage()
        factory, close = storage.unit_of_work, storage.close

        def unit_of_work() -> Any:
            uow = factory()
            commit = uow.commit

            async def slow_commit(*, durable: bool = True) -> None:
                if self.slow:
                    self.slow_commits += 1
                    await asyncio.sleep(0.05)
                await commit(durable=durable)

            uow.commit = slow_commit
            return uow

        async def close_noting_the_tasks() -> None:
            self.at_close.append([(task.status, task.attempts) for task in storage.tasks.values()])
            await close()

        storage.unit_of_work = unit_of_work  # type: ignore[method-assign]
        storage.close = close_noting_the_tasks  # type: ignore[method-assign]


async def test_a_worker_shutting_down_as_it_writes_an_outcome_still_records_it(
    app: Container, gate: Gate
) -> None:
    storage = SlowToWrite(app)
    task = await submit(app, "gate", max_attempts=1)
    running = asyncio.create_task(run(app, task.id))
    await asyncio.wait_for(gate.started.wait(), 5)
    storage.slow = True
    gate.opened.set()
    await eventually(lambda: storage.slow_commits == 1)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    done = await status_of(app, task.id)
    assert (done.status, done.result, done.attempts) == (TaskStatus.SUCCEEDED, {"ran": 1}, 1)


async def test_a_stopping_worker_hands_its_tasks_back_before_its_storage_closes(
    gate: Gate, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Several tasks still running when the grace period ends: by the time the storage
    closes, each one is QUEUED again, its attempt not counted; it runs again as attempt 1
    of 1. The worker says how many it hands back."""
    from entrypoints.worker.runtime import Runtime

    app = app_for(gate, clock, shutdown_grace_seconds=0.1)
    storage = SlowToWrite(app)
    runtime = Runtime(app, consume=True)
    await runtime.start()
    try:
        tasks = [await submit(app, "gate", max_attempts=1) for _ in range(4)]
        await eventually(lambda: gate.runs == 4)
    finally:
        storage.slow = True
        caplog.set_level(logging.WARNING, "taskport.runtime")
        await runtime.stop()
    assert storage.at_close == [[(TaskStatus.QUEUED, 0)] * 4]
    assert runtime_warnings(caplog) == [
        "tasks still running after the grace period of 0.1s are handed back: 4"
    ]
    gate.opened.set()
    for task in tasks:
        await run(app, task.id)
    done = [await status_of(app, task.id) for task in tasks]
    assert [(task.status, task.attempts) for task in done] == [(TaskStatus.SUCCEEDED, 1)] * 4


async def test_a_stopping_api_lets_the_pushes_it_cut_hand_their_tasks_back(
    app: Container, gate: Gate
) -> None:
    """The server cancels the Pub/Sub pushes still open after the grace period, then stops
    the application: their tasks are QUEUED again before the storage closes."""
    from entrypoints.worker.runtime import Runtime

    storage = SlowToWrite(app)
    runtime = Runtime(app, consume=False)
    await runtime.start()
    try:
        task = await submit(app, "gate", max_attempts=1)
        pushed = asyncio.create_task(run(app, task.id))
        await asyncio.wait_for(gate.started.wait(), 5)
    finally:
        storage.slow = True
        pushed.cancel()
        await runtime.stop()
    assert storage.at_close == [[(TaskStatus.QUEUED, 0)]]
    with pytest.raises(asyncio.CancelledError):
        await pushed


async def test_a_stopping_api_says_when_a_cut_push_has_not_handed_its_task_back_in_time(
    gate: Gate, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The hand-back of a push the server cut cannot commit (the storage hangs): the
    shutdown stops waiting for it after the grace period, and says so."""
    from entrypoints.worker.runtime import Runtime

    app = app_for(gate, clock, shutdown_grace_seconds=0.1)
    storage = app.storage()
    factory = storage.unit_of_work
    hanging = asyncio.Event()
    released = asyncio.Event()

    def unit_of_work() -> Any:
        uow = factory()
        commit = uow.commit

        async def commit_unless_hanging(*, durable: bool = True) -> None:
            if hanging.is_set():
                await released.wait()
            await commit(durable=durable)

        uow.commit = commit_unless_hanging
        return uow

    storage.unit_of_work = unit_of_work  # type: ignore[method-assign]
    runtime = Runtime(app, consume=False)
    await runtime.start()
    try:
        task = await submit(app, "gate", max_attempts=1)
        pushed = asyncio.create_task(run(app, task.id))
        await asyncio.wait_for(gate.started.wait(), 5)
    finally:
        hanging.set()
        pushed.cancel()
        caplog.set_level(logging.WARNING, "taskport.runtime")
        await runtime.stop()
    released.set()
    await asyncio.gather(pushed, return_exceptions=True)
    assert runtime_warnings(caplog) == [
        "writes still under way 0.1s after the grace period are cut: tasks not yet handed "
        "back are left to the recovery sweep, messages not yet marked sent to the relay sweep"
    ]


async def test_a_worker_shutting_down_while_claiming_hands_the_task_back(
    app: Container,
) -> None:
    task = await submit(app)
    claiming = asyncio.create_task(run(app, task.id))
    await asyncio.sleep(0)  # the claim is handed to its batch, which has not run yet
    claiming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claiming
    handed_back = await status_of(app, task.id)
    assert (handed_back.status, handed_back.attempts) == (TaskStatus.QUEUED, 0)
    assert (await run(app, task.id)).outcome is Outcome.RAN


async def test_recovery_retries_lost_attempts_and_redispatches_forgotten_tasks(
    app: Container, clock: FakeClock
) -> None:
    queued = await submit(app)
    lost = await submit(app, timeout_seconds=5)
    await store_as_started(app, lost.id)
    await app.relay_outbox()()
    assert await app.recover_stalled_tasks()() == 0
    clock.advance(hours=1)
    assert await app.recover_stalled_tasks()() == 2
    assert await app.recover_stalled_tasks()() == 0
    retrying = await status_of(app, lost.id)
    assert (retrying.status, retrying.error.type) == (TaskStatus.SCHEDULED, "AttemptLost")
    async with app.uow()() as uow:
        pending = [RunTaskMessage.decode(m.body).task_id for m in await uow.outbox.pending(10)]
    assert pending == [queued.id]


async def test_a_new_process_with_an_in_process_queue_redispatches_everything(
    app: Container, clock: FakeClock
) -> None:
    queued = await submit(app)
    running = await submit(app)
    await store_as_started(app, running.id)
    await app.relay_outbox()()
    assert await app.recover_stalled_tasks()(orphaned=True) == 2
    assert (await status_of(app, running.id)).error.type == "AttemptLost"
    async with app.uow()() as uow:
        pending = [RunTaskMessage.decode(m.body).task_id for m in await uow.outbox.pending(10)]
    assert pending == [queued.id]


async def test_recovery_at_start_ends_once_the_left_tasks_are_dispatched_again(
    app: Container, clock: FakeClock
) -> None:
    for _ in range(3):
        await submit(app)
    started = clock.now()
    clock.advance(seconds=1)
    recover = app.recover_stalled_tasks()
    assert await recover(orphaned=True, started=started) == 3
    clock.advance(seconds=1)
    assert await recover(orphaned=True, started=started) == 0


async def chatty(payload: Any, context: Any) -> Any:
    for step in range(1, 11):
        context.report_progress(step / 10, f"step {step}")
        await asyncio.sleep(0.03)  # the work of a step: several cancel polls go by
    return "done"


@pytest.mark.parametrize(("interval", "throttled"), [(3600, True), (0, False)])
async def test_progress_is_written_at_most_once_per_interval(
    clock: FakeClock, interval: float, throttled: bool
) -> None:
    app = create_container(
        Settings(
            storage_url="memory://", cancel_poll_seconds=0.01, progress_interval_seconds=interval
        )
    )
    app.clock.override(providers.Object(clock))
    app.registry.override(providers.Singleton(KindRegistry, [Kind("chatty", chatty)]))
    task = await submit(app, "chatty")
    await run(app, task.id)
    done = await status_of(app, task.id)
    assert done.status is TaskStatus.SUCCEEDED
    # Less the start and the success; the last report is written with the success.
    progress_writes = done.version - task.version - 2
    if throttled:
        assert progress_writes == 2  # one while running, the rest held back, the last at the end
    else:
        assert progress_writes > 2
    assert (done.progress.fraction, done.progress.message) == (1.0, "step 10")


def identity(worker_id: str, clock: FakeClock) -> Any:
    from application.use_cases.heartbeat_worker import WorkerIdentity

    return WorkerIdentity(worker_id, "host-1", 42, clock.now(), concurrency=4)


async def test_a_running_task_names_the_worker_running_it(app: Container, gate: Gate) -> None:
    task = await submit(app, "gate")
    running = asyncio.create_task(run(app, task.id))
    await asyncio.wait_for(gate.started.wait(), 5)
    assert (await status_of(app, task.id)).worker_id == app.worker_id()
    gate.opened.set()
    await running
    assert (await status_of(app, task.id)).worker_id is None


async def test_the_tasks_of_a_silent_worker_are_retried_before_their_lease_ends(
    app: Container, clock: FakeClock
) -> None:
    await app.heartbeat_worker()(identity("w-1", clock), 1)
    task = await submit(app, timeout_seconds=600)
    await store_as_started(app, task.id, "w-1")
    await app.relay_outbox()()
    clock.advance(seconds=10)  # two heartbeats missed: not lost yet (3 intervals of 5 s)
    assert await app.recover_stalled_tasks()() == 0
    clock.advance(seconds=10)
    assert await app.recover_stalled_tasks()() == 1
    retrying = await status_of(app, task.id)
    assert (retrying.status, retrying.error.type) == (TaskStatus.SCHEDULED, "AttemptLost")


async def test_workers_are_alive_then_lost_then_pruned(app: Container, clock: FakeClock) -> None:
    from application.use_cases.list_workers import WorkerStatus

    await app.heartbeat_worker()(identity("quiet", clock), 0)
    await app.heartbeat_worker()(identity("busy", clock), 0)
    clock.advance(seconds=20)
    await app.heartbeat_worker()(identity("busy", clock), 3)
    listed = {view.record.id: view for view in await app.list_workers()()}
    assert listed["quiet"].status is WorkerStatus.LOST
    assert (listed["busy"].status, listed["busy"].record.running) == (WorkerStatus.ALIVE, 3)
    clock.advance(hours=1)
    await app.heartbeat_worker()(identity("busy", clock), 0)
    assert [view.record.id for view in await app.list_workers()()] == ["busy"]


async def test_a_worker_registers_at_start_and_leaves_at_a_clean_stop(app: Container) -> None:
    from entrypoints.worker.runtime import Runtime

    runtime = Runtime(app, consume=True)
    await runtime.start()
    try:
        workers = await app.list_workers()()
        assert [view.record.id for view in workers] == [app.worker_id()]
        assert workers[0].record.concurrency == app.settings().worker_concurrency
    finally:
        await runtime.stop()
    assert await app.list_workers()() == []


class FailingConsumer:
    """A consumer whose consume ends in an error of its own, as a driver's bug would."""

    async def consume(self, callback: Any, prefetch: int, limits: Any = None) -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("the consumer broke")

    async def stop(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_a_worker_whose_consumer_stops_by_itself_says_so_and_ends(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Else the process would stay registered, heartbeating, and take no task."""
    from entrypoints.cli import _work

    container = container_for(clock)
    container.consumer.override(providers.Object(FailingConsumer()))
    with caplog.at_level(logging.ERROR, "taskport.runtime"):
        assert await asyncio.wait_for(_work(container), 10) is True
    [logged] = [r for r in caplog.records if r.name == "taskport.runtime"]
    assert logged.getMessage().startswith("the consumer of the task queue stopped")
    assert "the consumer broke" in str(logged.exc_info[1])
