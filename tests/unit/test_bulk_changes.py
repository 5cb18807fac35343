"""Changes to many tasks at once (cancel what waits, retry what finished), on the in-memory
adapters: the tasks changed together, or one by one when one of them changed meanwhile."""

from __future__ import annotations

from typing import Any

import pytest
from dependency_injector import providers

from application.use_cases.bulk_change import MatchingTasks
from application.use_cases.cancel_tasks import CancelTasksHandler
from application.use_cases.submit_task import SubmitTask
from domain.values import TaskStatus
from entrypoints.container import Container, create_container
from entrypoints.settings import Settings
from tests.factories import FakeClock, HeldRelay

WAITING = frozenset({TaskStatus.QUEUED, TaskStatus.SCHEDULED})


@pytest.fixture
def app() -> Container:
    container = create_container(Settings(storage_url="memory://"))
    container.clock.override(providers.Object(FakeClock()))
    container.publish_committed.override(providers.Object(HeldRelay()))
    return container


async def submit(app: Container, count: int, kind: str = "echo", owner: str = "alice") -> list[Any]:
    submit = app.submit_task()
    payload = {"seconds": 0} if kind == "sleep" else {"n": 1}
    return [(await submit(SubmitTask(owner, kind, payload))).task for _ in range(count)]


async def status_of(app: Container, task_id: Any) -> TaskStatus:
    async with app.uow()() as uow:
        task = await uow.tasks.get(task_id)
    assert task is not None
    return task.status


async def test_the_tasks_that_match_are_changed_together_up_to_the_limit(app: Container) -> None:
    tasks = await submit(app, 3)
    others = await submit(app, 1, kind="sleep")
    bobs = await submit(app, 1, owner="bob")
    first = await app.cancel_tasks()(MatchingTasks("alice", WAITING, limit=2, kind="echo"))
    assert (first.changed, first.more) == ((tasks[2].id, tasks[1].id), True)
    rest = await app.cancel_tasks()(MatchingTasks("alice", WAITING, kind="echo"))
    assert (rest.changed, rest.more) == ((tasks[0].id,), False)
    assert {await status_of(app, task.id) for task in tasks} == {TaskStatus.CANCELLED}
    assert await status_of(app, others[0].id) == TaskStatus.QUEUED
    assert await status_of(app, bobs[0].id) == TaskStatus.QUEUED
    retried = await app.retry_tasks()(MatchingTasks("alice", frozenset({TaskStatus.CANCELLED})))
    assert set(retried.changed) == {task.id for task in tasks}
    assert {await status_of(app, task.id) for task in tasks} == {TaskStatus.QUEUED}


async def test_a_change_holds_the_tasks_of_a_page_of_bytes_then_leaves_the_rest(
    app: Container,
) -> None:
    """A thousand tasks of a megabyte each are not read at once: a call ends, with
    ``more``, once the payloads it read pass the bytes a page of the list holds."""
    tasks = await submit(app, 5)  # {"n":1} and null: 11 bytes each
    app.cancel_tasks.override(
        providers.Singleton(
            CancelTasksHandler, uow=app.uow, recorder=app.recorder, clock=app.clock, max_bytes=25
        )
    )
    calls = []
    while not calls or calls[-1].more:
        calls.append(await app.cancel_tasks()(MatchingTasks("alice", WAITING)))
    assert [len(call.changed) for call in calls] == [2, 2, 1]
    assert [task_id for call in calls for task_id in call.changed] == [
        task.id for task in reversed(tasks)
    ]


async def test_a_task_changed_meanwhile_sends_each_on_its_own(
    app: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the read and the commit a worker starts one task: the unit commits nothing,
    and each task is cancelled on its own: the waiting ones at once, the running one by
    request, as a cancel of that one task would."""
    tasks = await submit(app, 3)
    recorder = app.recorder()
    real_commit = recorder.commit
    raced = False

    async def commit_after_a_start(uow: Any, **changes: Any) -> None:
        nonlocal raced
        if not raced:
            raced = True
            async with app.uow()() as other:
                started = await other.tasks.get(tasks[1].id)
                started.start(app.clock().now())
                await real_commit(other, saved=[started])
        await real_commit(uow, **changes)

    monkeypatch.setattr(recorder, "commit", commit_after_a_start)
    cancelled = await app.cancel_tasks()(MatchingTasks("alice", WAITING))
    assert cancelled.changed == tuple(task.id for task in reversed(tasks))
    assert await status_of(app, tasks[0].id) == TaskStatus.CANCELLED
    assert await status_of(app, tasks[2].id) == TaskStatus.CANCELLED
    async with app.uow()() as uow:
        running = await uow.tasks.get(tasks[1].id)
    assert running is not None and running.status is TaskStatus.RUNNING
    assert running.cancel_requested


@pytest.mark.parametrize(
    ("use_case", "statuses"),
    [
        ("cancel_tasks", {TaskStatus.RUNNING}),
        ("cancel_tasks", set()),
        ("retry_tasks", {TaskStatus.SUCCEEDED}),
        ("retry_tasks", {TaskStatus.FAILED, TaskStatus.QUEUED}),
    ],
)
async def test_statuses_the_change_does_not_take_are_refused(
    app: Container, use_case: str, statuses: set[TaskStatus]
) -> None:
    with pytest.raises(ValueError, match=r"takes tasks in .* only"):
        await getattr(app, use_case)()(MatchingTasks("alice", frozenset(statuses)))
