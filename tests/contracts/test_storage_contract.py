"""The storage ports' contract (UnitOfWork, TaskRepository, Outbox), for every storage."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from adapters.storage.sql import SqlStorage
from adapters.storage.sql.schema import outbox
from application.errors import ConcurrencyConflict, DuplicateIdempotencyKey
from application.messages import RunTaskMessage
from application.ports.task_repository import TaskQuery
from domain.errors import IllegalTransition
from domain.task import Task
from domain.values import DEFAULT_QUEUE, TaskError, TaskStatus
from tests.factories import T0, make_message, make_task


async def add(storage: Any, *tasks: Any) -> None:
    async with storage.unit_of_work() as uow:
        for task in tasks:
            await uow.tasks.add(task)
        await uow.commit()


async def get(storage: Any, task_id: Any) -> Any:
    async with storage.unit_of_work() as uow:
        return await uow.tasks.get(task_id)


async def test_a_committed_task_reads_back_with_every_field(storage: Any) -> None:
    task = make_task(
        idempotency_key="key-1",
        run_at=T0 + timedelta(hours=1),
        callback_url="https://hooks.example.com/done?token=ü",
        expires_at=T0 + timedelta(days=1),
        queue="images",
    )
    await add(storage, task)
    async with storage.unit_of_work() as uow:
        loaded = await uow.tasks.get(task.id)
        loaded.enqueue(T0 + timedelta(hours=2))
        loaded.start(T0 + timedelta(hours=2))
        loaded.fail(T0 + timedelta(hours=2), TaskError("Boom", "exploded", retryable=True))
        await uow.tasks.save(loaded)
        await uow.commit()
    stored = await get(storage, task.id)
    for field in (
        "id",
        "owner",
        "kind",
        "payload",
        "status",
        "retry_policy",
        "timeout",
        "created_at",
        "updated_at",
        "run_at",
        "idempotency_key",
        "request_fingerprint",
        "attempts",
        "started_at",
        "finished_at",
        "lease_expires_at",
        "cancel_requested",
        "result",
        "error",
        "version",
        "worker_id",
        "callback_url",
        "expires_at",
        "queue",
    ):
        assert getattr(stored, field) == getattr(loaded, field), field
    assert stored.status is TaskStatus.SCHEDULED
    assert stored.run_at.tzinfo is not None


async def test_a_unit_saves_a_finished_task_and_adds_its_callback_delivery_together(
    storage: Any,
) -> None:
    """What a finished task with a callback URL commits: its outcome, a new task (the
    delivery) and that task's message; with a stale version, none of them."""
    task, _ = await _stored_and_claimed(storage)
    stale = await get(storage, task.id)
    delivery = make_task(kind="http")
    message = make_message(RunTaskMessage(delivery.id).encode())
    async with storage.unit_of_work() as uow:
        finished = await uow.tasks.get(task.id)
        finished.succeed(T0 + timedelta(seconds=1), {"ok": True})
        await uow.tasks.save(finished)
        await uow.tasks.add(delivery)
        await uow.outbox.put(message)
        await uow.commit()
    assert (await get(storage, task.id)).status is TaskStatus.SUCCEEDED
    assert (await get(storage, delivery.id)).kind == "http"

    stale_delivery = make_task(kind="http")
    with pytest.raises(ConcurrencyConflict):
        async with storage.unit_of_work() as uow:
            await uow.tasks.track(stale)
            stale.succeed(T0 + timedelta(seconds=2), {"ok": False})
            await uow.tasks.save(stale)
            await uow.tasks.add(stale_delivery)
            await uow.outbox.put(make_message(RunTaskMessage(stale_delivery.id).encode()))
            await uow.commit()
    assert await get(storage, stale_delivery.id) is None
    async with storage.unit_of_work() as uow:
        pending = await uow.outbox.pending(10)
    assert [found.id for found in pending] == [message.id]


async def test_the_progress_of_a_running_task_reads_back_and_clears(storage: Any) -> None:
    task = make_task()
    await add(storage, task)
    async with storage.unit_of_work() as uow:
        running = await uow.tasks.get(task.id)
        running.start(T0)
        running.report_progress(T0 + timedelta(seconds=1), 0.25, "a quarter — ünïcode")
        await uow.tasks.save(running)
        await uow.commit()
    stored = await get(storage, task.id)
    assert stored.progress == running.progress
    assert stored.progress.updated_at.tzinfo is not None
    async with storage.unit_of_work() as uow:
        released = await uow.tasks.get(task.id)
        released.release(T0 + timedelta(seconds=2))
        await uow.tasks.save(released)
        await uow.commit()
    assert (await get(storage, task.id)).progress is None


async def failed_as_stored(storage: Any, error: TaskError, progress: str = "") -> Any:
    """A task that started, reported ``progress`` and failed with ``error``, read back."""
    task = make_task()
    await add(storage, task)
    async with storage.unit_of_work() as uow:
        running = await uow.tasks.get(task.id)
        running.start(T0)
        running.report_progress(T0, 0.5, progress)
        running.fail(T0, error)
        await uow.tasks.save(running)
        await uow.commit()
    return await get(storage, task.id)


async def test_messages_with_nul_or_lone_surrogates_are_stored_replaced(storage: Any) -> None:
    """An exception's or a handler's text may hold NUL, which PostgreSQL's text refuses, or
    a lone surrogate, which UTF-8 cannot encode: the task keeps the message, each of them
    replaced, and the write is not refused."""
    error = TaskError("Boom", "bad byte \x00 here, \udc80 there", retryable=False)
    stored = await failed_as_stored(storage, error, progress="half\x00way")
    assert stored.status is TaskStatus.FAILED
    assert stored.error.message == "bad byte \ufffd here, \ufffd there"


async def test_an_error_longer_than_its_limits_is_stored_cut(storage: Any) -> None:
    stored = await failed_as_stored(storage, TaskError("E" * 500, "m" * 100_000, False))
    assert (len(stored.error.type), len(stored.error.message)) == (200, 4096)


async def test_uncommitted_changes_are_never_seen(storage: Any) -> None:
    task = make_task()
    async with storage.unit_of_work() as uow:
        await uow.tasks.add(task)
        await uow.outbox.put(make_message())
    assert await get(storage, task.id) is None
    async with storage.unit_of_work() as uow:
        assert list(await uow.outbox.pending(10)) == []


async def test_a_failed_unit_leaves_no_trace(storage: Any) -> None:
    task = make_task()
    await add(storage, task)
    with pytest.raises(RuntimeError):
        async with storage.unit_of_work() as uow:
            loaded = await uow.tasks.get(task.id)
            loaded.start(T0)
            await uow.tasks.save(loaded)
            raise RuntimeError("crash before commit")
    assert (await get(storage, task.id)).status is TaskStatus.QUEUED


async def test_another_owners_task_is_invisible(storage: Any) -> None:
    task = make_task(owner="alice")
    await add(storage, task)
    async with storage.unit_of_work() as uow:
        assert await uow.tasks.get_owned("bob", task.id) is None
        assert (await uow.tasks.get_owned("alice", task.id)).id == task.id


async def test_a_stale_save_is_refused(storage: Any) -> None:
    task = make_task()
    await add(storage, task)
    first, second = storage.unit_of_work(), storage.unit_of_work()
    async with first, second:
        mine = await first.tasks.get(task.id)
        theirs = await second.tasks.get(task.id)
        mine.start(T0)
        await first.tasks.save(mine)
        await first.commit()
        theirs.cancel(T0)
        with pytest.raises(ConcurrencyConflict):
            await second.tasks.save(theirs)
            await second.commit()
    assert (await get(storage, task.id)).status is TaskStatus.RUNNING


async def test_a_commit_that_need_not_be_durable_is_seen_and_checked_as_any_other(
    storage: Any,
) -> None:
    # Claims and sent marks are committed with durable=False: seen at once, all or
    # nothing, and a stale version still conflicts.
    tasks = [make_task(), make_task()]
    message = make_message()
    await add_with_messages(storage, tasks, [message])
    first, second = storage.unit_of_work(), storage.unit_of_work()
    async with first, second:
        mine = await first.tasks.get_many([task.id for task in tasks])
        theirs = await second.tasks.get_many([task.id for task in tasks])
        for task in (*mine.values(), *theirs.values()):
            task.start(T0)
        for task in mine.values():
            await first.tasks.save(task)
        await first.outbox.mark_sent([message])
        await first.commit(durable=False)
        with pytest.raises(ConcurrencyConflict):
            for task in theirs.values():
                await second.tasks.save(task)
            await second.commit(durable=False)
    for task in tasks:
        stored = await get(storage, task.id)
        assert (stored.status, stored.version) == (TaskStatus.RUNNING, task.version + 1)
    async with storage.unit_of_work() as uow:
        assert list(await uow.outbox.pending(10)) == []


async def _stored_and_claimed(storage: Any) -> tuple[Task, Task]:
    """A new task, stored, then started in a unit of its own: as stored, and as claimed."""
    task = make_task()
    await add(storage, task)
    async with storage.unit_of_work() as uow:
        claimed = await uow.tasks.get(task.id)
        claimed.start(T0)
        await uow.tasks.save(claimed)
        await uow.commit()
    return task, claimed


async def test_a_tracked_task_is_saved_without_being_read_again(storage: Any) -> None:
    task, claimed = await _stored_and_claimed(storage)
    async with storage.unit_of_work() as uow:
        await uow.tasks.track(claimed)
        claimed.succeed(T0, {"ok": True})
        await uow.tasks.save(claimed)
        await uow.commit()
    stored = await get(storage, task.id)
    assert (stored.status, stored.result, stored.version) == (
        TaskStatus.SUCCEEDED,
        {"ok": True},
        claimed.version,
    )


async def test_a_tracked_task_changed_since_is_refused(storage: Any) -> None:
    task, claimed = await _stored_and_claimed(storage)
    async with storage.unit_of_work() as uow:
        theirs = await uow.tasks.get(task.id)
        theirs.cancel(T0)
        await uow.tasks.save(theirs)
        await uow.commit()
    with pytest.raises(ConcurrencyConflict):
        async with storage.unit_of_work() as uow:
            await uow.tasks.track(claimed)
            claimed.succeed(T0, None)
            await uow.tasks.save(claimed)
            await uow.commit()
    stored = await get(storage, task.id)
    assert (stored.status, stored.cancel_requested) == (TaskStatus.RUNNING, True)


async def test_listed_tasks_saved_together_commit_all_or_none_when_one_changed_since(
    storage: Any,
) -> None:
    """What a change to many tasks (a bulk cancel) rests on: the tasks of a page, tracked
    and saved in one unit, are written together, or none of them when one changed since."""
    tasks = [make_task() for _ in range(3)]
    await add(storage, *tasks)
    query = TaskQuery("alice", limit=10, statuses=frozenset({TaskStatus.QUEUED}))

    async def cancel_all(uow: Any, listed: list[Task]) -> None:
        for task in listed:
            await uow.tasks.track(task)
            task.cancel(T0)
            await uow.tasks.save(task)

    async with storage.unit_of_work() as uow:
        listed = list(await uow.tasks.list(query))
        async with storage.unit_of_work() as other:
            started = await other.tasks.get(tasks[1].id)
            started.start(T0)
            await other.tasks.save(started)
            await other.commit()
        await cancel_all(uow, listed)
        with pytest.raises(ConcurrencyConflict):
            await uow.commit()
    assert [(await get(storage, task.id)).status for task in tasks] == [
        TaskStatus.QUEUED,
        TaskStatus.RUNNING,
        TaskStatus.QUEUED,
    ]
    async with storage.unit_of_work() as uow:
        await cancel_all(uow, list(await uow.tasks.list(query)))
        await uow.commit()
    assert {(await get(storage, task.id)).status for task in (tasks[0], tasks[2])} == {
        TaskStatus.CANCELLED
    }


async def test_many_tasks_are_read_at_once(storage: Any) -> None:
    first, second, unknown = make_task(payload={"n": 1}), make_task(payload=[1, "two"]), make_task()
    await add(storage, first, second)
    async with storage.unit_of_work() as uow:
        staged = make_task()
        await uow.tasks.add(staged)
        found = await uow.tasks.get_many([first.id, second.id, unknown.id, staged.id])
    assert set(found) == {first.id, second.id, staged.id}
    assert (found[first.id].payload, found[second.id].payload) == ({"n": 1}, [1, "two"])
    assert found[second.id].version == second.version


async def _saved_together(storage: Any, tasks: list[Task]) -> None:
    """Starts and ends every task of ``tasks`` in one unit, read with ``get_many``."""
    async with storage.unit_of_work() as uow:
        loaded = await uow.tasks.get_many([task.id for task in tasks])
        for task in loaded.values():
            task.start(T0, "worker-1")
        results: list[Any] = [{"a": [1, "x", None]}, "plain", None]
        for task, result in zip(loaded.values(), results, strict=False):
            task.succeed(T0, result)
        for task in list(loaded.values())[len(results) :]:
            task.fail(T0, TaskError("Boom", "it broke", retryable=False))
        for task in loaded.values():
            await uow.tasks.save(task)
        await uow.commit()


async def test_many_saved_tasks_commit_together(storage: Any) -> None:
    tasks = [make_task(payload={"n": n}) for n in range(4)]
    await add(storage, *tasks)
    await _saved_together(storage, tasks)
    stored = [await get(storage, task.id) for task in tasks]
    assert [(task.status, task.result, task.version) for task in stored] == [
        (TaskStatus.SUCCEEDED, {"a": [1, "x", None]}, 3),
        (TaskStatus.SUCCEEDED, "plain", 3),
        (TaskStatus.SUCCEEDED, None, 3),
        (TaskStatus.FAILED, None, 3),
    ]
    assert stored[3].error == TaskError("Boom", "it broke", retryable=False)
    assert [task.payload for task in stored] == [{"n": n} for n in range(4)]
    assert stored[0].finished_at == T0
    assert stored[0].timeout == tasks[0].timeout


async def test_many_saved_tasks_are_refused_together_when_one_is_stale(storage: Any) -> None:
    tasks = [make_task() for _ in range(3)]
    await add(storage, *tasks)
    async with storage.unit_of_work() as uow:
        loaded = await uow.tasks.get_many([task.id for task in tasks])
        async with storage.unit_of_work() as other:
            theirs = await other.tasks.get(tasks[2].id)
            theirs.cancel(T0)
            await other.tasks.save(theirs)
            await other.commit()
        for task in loaded.values():
            task.start(T0)
            await uow.tasks.save(task)
        with pytest.raises(ConcurrencyConflict):
            await uow.commit()
    stored = [await get(storage, task.id) for task in tasks]
    assert [task.status for task in stored] == [
        TaskStatus.QUEUED,
        TaskStatus.QUEUED,
        TaskStatus.CANCELLED,
    ]


async def test_of_many_racing_claimers_exactly_one_starts_the_task(storage: Any) -> None:
    task = make_task()
    await add(storage, task)

    async def claim() -> bool:
        try:
            async with storage.unit_of_work() as uow:
                loaded = await uow.tasks.get(task.id)
                await asyncio.sleep(0)
                loaded.start(T0)
                await uow.tasks.save(loaded)
                await uow.commit()
        except (ConcurrencyConflict, IllegalTransition):
            return False
        return True

    wins = await asyncio.gather(*(claim() for _ in range(8)))
    assert sum(wins) == 1
    stored = await get(storage, task.id)
    assert (stored.status, stored.attempts) == (TaskStatus.RUNNING, 1)


async def test_an_idempotency_key_is_unique_per_owner(storage: Any) -> None:
    await add(storage, make_task(owner="alice", idempotency_key="k"))
    await add(storage, make_task(owner="bob", idempotency_key="k"))
    with pytest.raises(DuplicateIdempotencyKey):
        await add(storage, make_task(owner="alice", idempotency_key="k"))
    async with storage.unit_of_work() as uow:
        found = await uow.tasks.find_by_idempotency_key("alice", "k")
        assert found is not None and found.owner == "alice"
        assert await uow.tasks.find_by_idempotency_key("carol", "k") is None


async def test_pages_are_newest_first_and_never_skip_or_repeat(storage: Any) -> None:
    tasks = [make_task(owner="alice", kind="echo" if i % 3 else "sleep") for i in range(25)]
    await add(storage, *tasks, make_task(owner="bob"))
    seen: list[Any] = []
    before = None
    while True:
        async with storage.unit_of_work() as uow:
            page = list(await uow.tasks.list(TaskQuery("alice", limit=7, before=before)))
        seen.extend(task.id for task in page)
        if len(page) < 7:
            break
        before = page[-1].id
    assert seen == [task.id for task in reversed(tasks)]


async def test_pages_filter_by_status_and_kind(storage: Any) -> None:
    tasks = [make_task(kind="echo" if i % 2 else "sleep") for i in range(10)]
    await add(storage, *tasks)
    async with storage.unit_of_work() as uow:
        started = await uow.tasks.get(tasks[1].id)
        started.start(T0)
        await uow.tasks.save(started)
        await uow.commit()
    async with storage.unit_of_work() as uow:
        sleeps = await uow.tasks.list(TaskQuery("alice", limit=100, kind="sleep"))
        running = await uow.tasks.list(
            TaskQuery("alice", limit=100, statuses=frozenset({TaskStatus.RUNNING}))
        )
        queued_echo = await uow.tasks.list(
            TaskQuery("alice", limit=100, kind="echo", statuses=frozenset({TaskStatus.QUEUED}))
        )
    assert [t.id for t in sleeps] == [t.id for t in reversed(tasks) if t.kind == "sleep"]
    assert [t.id for t in running] == [tasks[1].id]
    assert len(queued_echo) == 4


async def test_pages_filter_by_queue(storage: Any) -> None:
    tasks = [make_task(queue="images" if i % 3 else DEFAULT_QUEUE) for i in range(9)]
    await add(storage, *tasks)
    async with storage.unit_of_work() as uow:
        images = await uow.tasks.list(TaskQuery("alice", limit=100, queue="images"))
        plain = await uow.tasks.list(TaskQuery("alice", limit=2, queue=DEFAULT_QUEUE))
        queued_images = await uow.tasks.list(
            TaskQuery("alice", limit=3, queue="images", statuses=frozenset({TaskStatus.QUEUED}))
        )
        elsewhere = await uow.tasks.list(TaskQuery("alice", limit=100, queue="video"))
    newest_first = list(reversed(tasks))
    assert [t.id for t in images] == [t.id for t in newest_first if t.queue == "images"]
    assert [t.id for t in plain] == [t.id for t in newest_first if t.queue == DEFAULT_QUEUE][:2]
    assert [t.id for t in queued_images] == [t.id for t in images[:3]]
    assert elsewhere == []


async def test_pages_of_several_statuses_are_newest_first_and_never_skip_or_repeat(
    storage: Any,
) -> None:
    tasks = [
        make_task(
            kind="echo" if i % 4 else "sleep",
            run_at=T0 + timedelta(hours=1) if i % 3 == 2 else None,
        )
        for i in range(30)
    ]
    await add(storage, *tasks, make_task(owner="bob"))
    async with storage.unit_of_work() as uow:
        for index, task_id in enumerate(task.id for task in tasks[::3]):
            task = await uow.tasks.get(task_id)
            assert task is not None
            task.start(T0) if index % 2 else task.cancel(T0)
            await uow.tasks.save(task)
        await uow.commit()

    async def walk(statuses: set[TaskStatus], kind: str | None = None) -> list[Any]:
        seen: list[Any] = []
        before = None
        while True:
            query = TaskQuery("alice", 4, frozenset(statuses), kind=kind, before=before)
            async with storage.unit_of_work() as uow:
                page = list(await uow.tasks.list(query))
            seen.extend(page)
            if len(page) < 4:
                return seen
            before = page[-1].id

    async with storage.unit_of_work() as uow:
        stored = [await uow.tasks.get(task.id) for task in reversed(tasks)]
    for statuses, kind in [
        ({TaskStatus.QUEUED, TaskStatus.RUNNING}, None),
        ({TaskStatus.SCHEDULED, TaskStatus.CANCELLED, TaskStatus.RUNNING}, None),
        ({TaskStatus.QUEUED, TaskStatus.CANCELLED}, "echo"),
        ({TaskStatus.SUCCEEDED, TaskStatus.FAILED}, None),
    ]:
        expected = [
            task.id
            for task in stored
            if task is not None and task.status in statuses and kind in (None, task.kind)
        ]
        assert [task.id for task in await walk(statuses, kind)] == expected


async def test_pages_filter_by_the_schedule_that_submitted_the_tasks(storage: Any) -> None:
    hourly, daily = uuid.uuid4(), uuid.uuid4()
    by_hour = [make_task(schedule_id=hourly) for _ in range(3)]
    by_day = make_task(schedule_id=daily)
    others = [make_task(), make_task(owner="bob", schedule_id=hourly)]
    await add(storage, by_hour[0], by_day, *others, *by_hour[1:])
    async with storage.unit_of_work() as uow:
        hourly_page = await uow.tasks.list(TaskQuery("alice", limit=2, schedule_id=hourly))
        rest = await uow.tasks.list(
            TaskQuery("alice", limit=2, schedule_id=hourly, before=hourly_page[-1].id)
        )
        read_back = await uow.tasks.get(by_day.id)
    assert [task.id for task in [*hourly_page, *rest]] == [t.id for t in reversed(by_hour)]
    assert {task.schedule_id for task in [*hourly_page, *rest]} == {hourly}
    assert read_back is not None and read_back.schedule_id == daily


async def test_a_task_keeps_the_request_that_submitted_it_through_its_changes(
    storage: Any,
) -> None:
    task, anonymous = make_task(request_id="req-9:a.b_c"), make_task()
    await add(storage, task, anonymous)
    async with storage.unit_of_work() as uow:
        read = await uow.tasks.get(task.id)
        assert read is not None
        read.start(T0, "worker-1")
        await uow.tasks.save(read)
        await uow.commit()
    async with storage.unit_of_work() as uow:
        started, other = await uow.tasks.get(task.id), await uow.tasks.get(anonymous.id)
    assert started is not None and started.request_id == "req-9:a.b_c"
    assert other is not None and other.request_id is None


async def test_a_task_keeps_its_queue_through_its_changes_and_every_read(storage: Any) -> None:
    images, default = make_task(queue="images"), make_task()
    await add(storage, images)
    async with storage.unit_of_work() as uow:
        # Added beside a saved task: on PostgreSQL, the other way tasks are inserted.
        await uow.tasks.add(default)
        started = await uow.tasks.get(images.id)
        started.start(T0, "worker-1")
        await uow.tasks.save(started)
        await uow.commit()
    async with storage.unit_of_work() as uow:
        read = await uow.tasks.get(images.id)
        listed = await uow.tasks.list(TaskQuery("alice", limit=10))
        many = await uow.tasks.get_many([images.id, default.id])
    assert read is not None and (read.status, read.queue) == (TaskStatus.RUNNING, "images")
    assert {task.id: task.queue for task in listed} == {images.id: "images", default.id: "default"}
    assert {task_id: task.queue for task_id, task in many.items()} == {
        images.id: "images",
        default.id: "default",
    }


async def test_due_returns_only_due_scheduled_tasks_earliest_first(storage: Any) -> None:
    later = make_task(run_at=T0 + timedelta(minutes=10))
    soon = make_task(run_at=T0 + timedelta(minutes=1))
    sooner = make_task(run_at=T0 + timedelta(seconds=30))
    queued = make_task()
    await add(storage, later, soon, sooner, queued)
    async with storage.unit_of_work() as uow:
        due = await uow.tasks.due(T0 + timedelta(minutes=5), limit=10)
        assert [task.id for task in due] == [sooner.id, soon.id]
    async with storage.unit_of_work() as uow:
        due = await uow.tasks.due(T0 + timedelta(hours=1), limit=1)
        assert [task.id for task in due] == [sooner.id]


async def test_due_never_returns_a_task_that_left_scheduled(storage: Any) -> None:
    cancelled = make_task(run_at=T0 + timedelta(seconds=1))
    waiting = make_task(run_at=T0 + timedelta(seconds=2))
    await add(storage, cancelled, waiting, make_task())
    async with storage.unit_of_work() as uow:
        loaded = await uow.tasks.get(cancelled.id)
        loaded.cancel(T0)
        await uow.tasks.save(loaded)
        await uow.commit()
    async with storage.unit_of_work() as uow:
        due = await uow.tasks.due(T0 + timedelta(hours=1), limit=10)
        assert [task.id for task in due] == [waiting.id]


async def test_concurrent_sweeps_never_receive_the_same_task(storage: Any) -> None:
    tasks = [make_task(run_at=T0 + timedelta(seconds=i + 1)) for i in range(10)]
    await add(storage, *tasks)
    first, second = storage.unit_of_work(), storage.unit_of_work()
    async with first, second:
        mine = {task.id for task in await first.tasks.due(T0 + timedelta(hours=1), limit=6)}
        theirs = {task.id for task in await second.tasks.due(T0 + timedelta(hours=1), limit=6)}
    assert len(mine) == 6
    assert len(theirs) == 4
    assert not mine & theirs


async def test_outbox_messages_are_claimed_then_marked_sent(storage: Any) -> None:
    messages = [make_message(body=f'{{"n": {i}}}'.encode()) for i in range(5)]
    async with storage.unit_of_work() as uow:
        for message in messages:
            await uow.outbox.put(message)
        await uow.commit()
    first, second = storage.unit_of_work(), storage.unit_of_work()
    async with first, second:
        mine = await first.outbox.pending(3)
        theirs = await second.outbox.pending(10)
        assert [m.id for m in mine] == [m.id for m in messages[:3]]
        assert [m.id for m in theirs] == [m.id for m in messages[3:]]
        assert mine[0].body == messages[0].body and mine[0].topic == "tasks"
        await first.outbox.mark_sent(mine)
        await first.commit()
    async with storage.unit_of_work() as uow:
        assert [m.id for m in await uow.outbox.pending(10)] == [m.id for m in messages[3:]]


async def test_pending_can_leave_out_messages_younger_than_an_instant(storage: Any) -> None:
    old, young = make_task(), make_task()
    messages = [
        message_about(old, created_at=T0),
        make_message(created_at=T0 + timedelta(seconds=1)),
        message_about(young, created_at=T0 + timedelta(seconds=5)),
        make_message(created_at=T0 + timedelta(seconds=6)),
    ]
    await add_with_messages(storage, [old, young], messages)
    async with storage.unit_of_work() as uow:
        taken = await uow.outbox.pending(10, T0 + timedelta(seconds=1))
        assert [m.id for m in taken] == [messages[0].id, messages[1].id]
    async with storage.unit_of_work() as uow:
        taken = await uow.outbox.pending(10, T0 + timedelta(seconds=6))
        assert [m.id for m in taken] == [m.id for m in messages]


async def test_messages_are_marked_sent_without_being_claimed_first(storage: Any) -> None:
    # The relay's fast path marks the messages it was handed after their commit.
    task, other = make_task(), make_task()
    about_task, standalone = message_about(task), make_message()
    await add_with_messages(storage, [task, other], [about_task, standalone])
    async with storage.unit_of_work() as uow:
        await uow.outbox.mark_sent([about_task, standalone])
        await uow.commit()
    async with storage.unit_of_work() as uow:
        assert list(await uow.outbox.pending(10)) == []
        assert await uow.outbox.backlog() == 0
    async with storage.unit_of_work() as uow:  # marking again changes nothing
        await uow.outbox.mark_sent([about_task])
        await uow.commit()
    assert (await get(storage, task.id)).version == task.version


async def test_pending_messages_come_oldest_first_whatever_the_order_they_were_put(
    storage: Any,
) -> None:
    messages = [make_message(created_at=T0 + timedelta(seconds=s)) for s in (2, 0, 3, 1)]
    async with storage.unit_of_work() as uow:
        for message in messages:
            await uow.outbox.put(message)
        await uow.commit()
    by_age = sorted(messages, key=lambda message: message.created_at)
    async with storage.unit_of_work() as uow:
        assert [m.id for m in await uow.outbox.pending(2)] == [m.id for m in by_age[:2]]
    async with storage.unit_of_work() as uow:
        assert [m.id for m in await uow.outbox.pending(10)] == [m.id for m in by_age]


def keeping_sent(storage: Any) -> bool:
    """Tells SQL storage to keep a row for each sent message until it is pruned (as
    ``TASKPORT_OUTBOX_RETENTION_SECONDS`` above 0 does) and says whether the storage keeps
    them: memory and MongoDB delete a message when it is marked sent."""
    if isinstance(storage, SqlStorage):
        storage.keep_sent = True
        return True
    return False


async def prune(storage: Any, sent_before: datetime, limit: int = 100) -> int:
    async with storage.unit_of_work() as uow:
        return int(await uow.outbox.prune(sent_before, limit))


async def test_a_sent_message_is_deleted_unless_the_storage_keeps_sent_ones(
    storage: Any,
) -> None:
    sent, waiting = make_message(), make_message()
    await add_with_messages(storage, [], [sent, waiting])
    async with storage.unit_of_work() as uow:
        await uow.outbox.mark_sent([sent])
        await uow.commit()
    assert await prune(storage, datetime.now(UTC) + timedelta(days=1)) == 0  # none kept
    if isinstance(storage, SqlStorage):
        rows = await storage.read_alone(select(outbox.c.id))
        assert [row.id for row in rows] == [waiting.id]


async def test_prune_deletes_sent_messages_once_older_than_the_cutoff(storage: Any) -> None:
    keeps = keeping_sent(storage)
    task = make_task()
    sent = [message_about(task), make_message(), make_message()]
    await add_with_messages(storage, [task, make_task()], sent)
    async with storage.unit_of_work() as uow:
        await uow.outbox.mark_sent(sent)
        await uow.commit()
    after_send = datetime.now(UTC)
    assert await prune(storage, after_send - timedelta(hours=1)) == 0  # sent too recently
    pruned = [await prune(storage, after_send + timedelta(seconds=1), limit=2) for _ in range(3)]
    assert pruned == ([2, 1, 0] if keeps else [0, 0, 0])
    assert await prune(storage, after_send + timedelta(days=1)) == 0  # gone for good


async def test_prune_never_deletes_a_message_not_yet_sent(storage: Any) -> None:
    keeps = keeping_sent(storage)
    task = make_task()
    waiting = [message_about(task), make_message(), make_message()]
    sent = make_message()
    await add_with_messages(storage, [task, make_task()], [*waiting, sent])
    async with storage.unit_of_work() as uow:
        await uow.outbox.mark_sent([sent])
        await uow.commit()
    future = datetime.now(UTC) + timedelta(days=1)
    async with storage.unit_of_work() as claimer:
        assert len(await claimer.outbox.pending(1)) == 1  # one of them claimed meanwhile
        assert await prune(storage, future) == (1 if keeps else 0)
    async with storage.unit_of_work() as uow:
        assert await uow.outbox.backlog() == 3
        assert {m.id for m in await uow.outbox.pending(10)} == {m.id for m in waiting}


async def prune_tasks(storage: Any, finished_before: datetime, limit: int = 100) -> int:
    async with storage.unit_of_work() as uow:
        return int(await uow.tasks.prune(finished_before, limit))


async def finished(storage: Any, task: Task, how: str, at: datetime) -> Task:
    """``task``, stored, then run to SUCCEEDED or FAILED, or CANCELLED, at ``at``."""
    await add(storage, task)
    async with storage.unit_of_work() as uow:
        stored = await uow.tasks.get(task.id)
        if how == "cancelled":
            stored.cancel(at)
        else:
            stored.start(at)
            if how == "succeeded":
                stored.succeed(at, {"ok": True})
            else:
                stored.fail(at, TaskError("Boom", "no", retryable=False))
        await uow.tasks.save(stored)
        await uow.commit()
    return stored


async def test_prune_deletes_finished_tasks_unchanged_since_the_cutoff_and_frees_their_keys(
    storage: Any,
) -> None:
    old = [
        await finished(storage, make_task(idempotency_key=f"old-{how}"), how, T0)
        for how in ("succeeded", "failed", "cancelled")
    ]
    recent = await finished(storage, make_task(), "succeeded", T0 + timedelta(hours=2))
    waiting = make_task(now=T0)  # queued since T0: never pruned, however old
    await add(storage, waiting)
    cutoff = T0 + timedelta(hours=1)

    assert [await prune_tasks(storage, cutoff, limit=2) for _ in range(3)] == [2, 1, 0]
    for task in old:
        assert await get(storage, task.id) is None
    assert await get(storage, recent.id) is not None
    assert (await get(storage, waiting.id)).status is TaskStatus.QUEUED
    async with storage.unit_of_work() as uow:
        assert await uow.tasks.find_by_idempotency_key("alice", "old-failed") is None
        page = await uow.tasks.list(TaskQuery("alice", limit=10))
    assert {task.id for task in page} == {recent.id, waiting.id}
    await add(storage, make_task(idempotency_key="old-failed"))  # the key is free again


async def test_concurrent_prunes_delete_each_task_once(storage: Any) -> None:
    for _ in range(6):
        await finished(storage, make_task(), "succeeded", T0)
    cutoff = T0 + timedelta(hours=1)
    pruned = await asyncio.gather(*(prune_tasks(storage, cutoff, limit=2) for _ in range(4)))
    pruned.append(await prune_tasks(storage, cutoff))  # what they left, if any
    assert sum(pruned) == 6  # each one counted by the prune that deleted it
    async with storage.unit_of_work() as uow:
        assert await uow.tasks.list(TaskQuery("alice", limit=10)) == []


async def delete_finished(storage: Any, task: Task, owner: str = "alice") -> bool:
    async with storage.unit_of_work() as uow:
        return bool(await uow.tasks.delete_finished(owner, task.id))


async def test_a_finished_task_is_deleted_once_and_frees_its_key(storage: Any) -> None:
    done = [
        await finished(storage, make_task(idempotency_key=f"key-{how}"), how, T0)
        for how in ("succeeded", "failed", "cancelled")
    ]
    kept = await finished(storage, make_task(), "succeeded", T0)
    for task in done:
        assert await delete_finished(storage, task)
        assert not await delete_finished(storage, task)  # deleted already
        assert await get(storage, task.id) is None
    async with storage.unit_of_work() as uow:
        assert await uow.tasks.find_by_idempotency_key("alice", "key-failed") is None
        listed = await uow.tasks.list(TaskQuery("alice", limit=10))
    assert [task.id for task in listed] == [kept.id]
    await add(storage, make_task(idempotency_key="key-failed"))  # the key is free again


async def test_a_task_is_deleted_only_by_its_owner_and_only_once_finished(storage: Any) -> None:
    others = await finished(storage, make_task(owner="bob"), "succeeded", T0)
    queued = make_task()
    scheduled = make_task(run_at=T0 + timedelta(hours=1))
    running = make_task()
    await add(storage, queued, scheduled, running)
    async with storage.unit_of_work() as uow:
        started = await uow.tasks.get(running.id)
        started.start(T0)
        await uow.tasks.save(started)
        await uow.commit()
    assert not await delete_finished(storage, others)  # alice's call
    assert not await delete_finished(storage, make_task())  # never stored
    for task in (others, queued, scheduled, running):
        assert not await delete_finished(storage, task)
        assert await get(storage, task.id) is not None
    assert await delete_finished(storage, others, owner="bob")


async def test_concurrent_deletes_of_a_task_delete_it_once(storage: Any) -> None:
    task = await finished(storage, make_task(), "failed", T0)
    deleted = await asyncio.gather(*(delete_finished(storage, task) for _ in range(4)))
    assert sorted(deleted) == [False, False, False, True]


async def test_deleting_a_task_never_loses_a_message_waiting_to_be_published(
    storage: Any,
) -> None:
    """MongoDB keeps such a message in its task's document: the task is kept until the
    relay has sent it. The other storages delete the task, and the message stays."""
    task = make_task()
    waiting = message_about(task)
    await add_with_messages(storage, [task], [waiting])
    async with storage.unit_of_work() as uow:
        stored = await uow.tasks.get(task.id)
        stored.cancel(T0)
        await uow.tasks.save(stored)
        await uow.commit()
    deleted = await delete_finished(storage, task)
    assert deleted is not (type(storage).__name__ == "MongoStorage")
    async with storage.unit_of_work() as uow:
        assert [m.id for m in await uow.outbox.pending(10)] == [waiting.id]
        await uow.outbox.mark_sent([waiting])
        await uow.commit()
    if not deleted:
        assert await delete_finished(storage, task)  # now that its message is sent
    assert await get(storage, task.id) is None


def message_about(task: Task, created_at: Any = T0) -> Any:
    return make_message(body=f'{{"task_id": "{task.id}"}}'.encode(), created_at=created_at)


async def add_with_messages(storage: Any, tasks: list[Task], messages: list[Any]) -> None:
    async with storage.unit_of_work() as uow:
        for task in tasks:
            await uow.tasks.add(task)
        for message in messages:
            await uow.outbox.put(message)
        await uow.commit()


async def test_a_task_and_its_message_commit_together(storage: Any) -> None:
    task = make_task()
    message = make_message()
    await add(storage, make_task(idempotency_key="same"))
    with pytest.raises(DuplicateIdempotencyKey):
        async with storage.unit_of_work() as uow:
            await uow.tasks.add(make_task(idempotency_key="same"))
            await uow.outbox.put(message)
            await uow.commit()
    async with storage.unit_of_work() as uow:
        assert message.id not in {m.id for m in await uow.outbox.pending(10)}
        await uow.tasks.add(task)
        await uow.outbox.put(message)
        await uow.commit()
    async with storage.unit_of_work() as uow:
        assert (await uow.tasks.get(task.id)) is not None
        assert message.id in {m.id for m in await uow.outbox.pending(10)}


async def test_tasks_are_found_by_many_idempotency_keys_at_once(storage: Any) -> None:
    first, second = make_task(idempotency_key="k1"), make_task(idempotency_key="k2")
    await add(storage, first, second, make_task(owner="bob", idempotency_key="k3"))
    async with storage.unit_of_work() as uow:
        found = await uow.tasks.find_by_idempotency_keys("alice", ["k1", "k2", "k3", "none"])
        assert {key: task.id for key, task in found.items()} == {"k1": first.id, "k2": second.id}
        assert await uow.tasks.find_by_idempotency_keys("alice", []) == {}


async def test_many_added_tasks_commit_together_or_not_at_all(storage: Any) -> None:
    await add(storage, make_task(idempotency_key="taken"))
    refused = [make_task(payload={"n": n}) for n in range(3)]
    refused.insert(2, make_task(idempotency_key="taken"))
    with pytest.raises(DuplicateIdempotencyKey):
        await add(storage, *refused)
    accepted = [make_task(payload={"n": n}, idempotency_key=f"k{n}") for n in range(5)]
    await add(storage, *accepted)
    page = await list_all(storage)
    assert {task.id for task in page} == {*(task.id for task in accepted), page[-1].id}
    assert len(page) == 6


async def list_all(storage: Any) -> list[Any]:
    async with storage.unit_of_work() as uow:
        return list(await uow.tasks.list(TaskQuery("alice", limit=100)))


async def test_health_check_answers(storage: Any) -> None:
    await storage.check()


async def test_stalled_finds_ended_leases_and_forgotten_queued_tasks(storage: Any) -> None:
    running = make_task(timeout=timedelta(seconds=10))
    running.start(T0)
    fresh_running = make_task(timeout=timedelta(hours=1))
    fresh_running.start(T0)
    old_queued = make_task(now=T0 - timedelta(hours=1))
    new_queued = make_task(now=T0)
    finished = make_task()
    finished.start(T0)
    finished.succeed(T0, None)
    for task in (running, fresh_running, finished):
        task.pull_events()
    await add(storage, running, fresh_running, old_queued, new_queued, finished)
    first, second = storage.unit_of_work(), storage.unit_of_work()
    async with first, second:
        found = await first.tasks.stalled(T0 + timedelta(minutes=5), T0 - timedelta(minutes=30), 10)
        assert {task.id for task in found} == {running.id, old_queued.id}
        # The other sweep does not receive what the first one claimed.
        others = await second.tasks.stalled(T0 + timedelta(minutes=5), T0, 10)
        assert {task.id for task in others} == {new_queued.id}


async def test_stats_count_by_status_and_kind_and_by_queue_and_find_the_oldest_queued(
    storage: Any,
) -> None:
    oldest = make_task(owner="alice", kind="echo", now=T0 - timedelta(minutes=10))
    newer = make_task(owner="alice", kind="echo", now=T0, queue="images")
    sleeping = make_task(
        owner="alice", kind="sleep", run_at=T0 + timedelta(hours=1), queue="images"
    )
    elsewhere = make_task(owner="bob", kind="echo", now=T0 - timedelta(hours=1))
    await add(storage, oldest, newer, sleeping, elsewhere)
    async with storage.unit_of_work() as uow:
        await uow.outbox.put(make_message())
        await uow.commit()
    async with storage.unit_of_work() as uow:
        mine = await uow.tasks.stats("alice")
        everyone = await uow.tasks.stats(None)
        backlog = await uow.outbox.backlog()
    assert mine.counts == {(TaskStatus.QUEUED, "echo"): 2, (TaskStatus.SCHEDULED, "sleep"): 1}
    assert mine.by_queue == {
        (TaskStatus.QUEUED, "default"): 1,
        (TaskStatus.QUEUED, "images"): 1,
        (TaskStatus.SCHEDULED, "images"): 1,
    }
    assert mine.oldest_queued_at == oldest.created_at
    # The scheduled task of "images" is not queued: the queue has waited since "newer".
    assert mine.oldest_queued_by_queue == {
        "default": oldest.created_at,
        "images": newer.created_at,
    }
    assert everyone.counts[TaskStatus.QUEUED, "echo"] == 3
    assert everyone.oldest_queued_at == elsewhere.created_at
    assert everyone.oldest_queued_by_queue["default"] == elsewhere.created_at
    assert backlog == 1


async def test_a_queued_task_has_waited_since_it_was_due(storage: Any) -> None:
    """A task queued when its run_at came has waited since then, not since it was created."""
    scheduled = make_task(now=T0 - timedelta(hours=2), run_at=T0 - timedelta(hours=1))
    scheduled.enqueue(T0 - timedelta(hours=1))
    at_once = make_task(now=T0 - timedelta(minutes=90), run_at=T0 - timedelta(hours=3))
    await add(storage, scheduled, at_once)
    async with storage.unit_of_work() as uow:
        stats = await uow.tasks.stats(None)
    assert stats.oldest_queued_at == at_once.created_at


async def test_the_worker_of_a_running_task_reads_back_and_clears(storage: Any) -> None:
    task = make_task()
    await add(storage, task)
    async with storage.unit_of_work() as uow:
        running = await uow.tasks.get(task.id)
        running.start(T0, "host-1-abc")
        await uow.tasks.save(running)
        await uow.commit()
    assert (await get(storage, task.id)).worker_id == "host-1-abc"
    async with storage.unit_of_work() as uow:
        finished = await uow.tasks.get(task.id)
        finished.succeed(T0, None)
        await uow.tasks.save(finished)
        await uow.commit()
    assert (await get(storage, task.id)).worker_id is None
