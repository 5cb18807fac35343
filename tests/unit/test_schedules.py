"""Schedules on the in-memory adapters, wired by the real container with a fake clock."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dependency_injector import providers

from adapters.handlers.builtin import BUILTIN_KINDS
from adapters.handlers.registry import KindRegistry
from adapters.storage.memory.schedules import MemorySchedules
from application.errors import InvalidPayload, StorageUnavailable, UnknownKind
from application.ports.task_repository import TaskQuery
from application.use_cases.create_schedule import CreateSchedule
from application.use_cases.manage_schedules import ManageSchedules
from application.use_cases.submit_task import SubmitTask, SubmitTaskHandler, Submitted
from domain.errors import InvalidSchedule, InvalidTask
from domain.schedule import Schedule, TaskTemplate
from entrypoints.container import Container, create_container
from entrypoints.settings import Settings
from tests.factories import FakeClock, HeldRelay

# A Monday, 12:00 UTC (13:00 in Paris).
MONDAY_NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_NOON)


@pytest.fixture
def app(clock: FakeClock) -> Container:
    container = create_container(Settings(storage_url="memory://"))
    container.clock.override(providers.Object(clock))
    container.publish_committed.override(providers.Object(HeldRelay()))
    return container


async def create(app: Container, cron: str = "*/5 * * * *", **fields: Any) -> Schedule:
    task = TaskTemplate(
        kind=fields.pop("kind", "echo"),
        payload=fields.pop("payload", {"n": 1}),
        expires_after_seconds=fields.pop("expires_after_seconds", None),
        queue=fields.pop("queue", "default"),
    )
    return await app.create_schedule()(
        CreateSchedule(owner="alice", cron=cron, task=task, **fields)
    )


async def tasks_of(app: Container) -> list[Any]:
    async with app.uow()() as uow:
        return list(await uow.tasks.list(TaskQuery(owner="alice", limit=100)))


async def test_a_schedule_is_first_due_at_its_next_time_in_its_time_zone(app: Container) -> None:
    daily = await create(app, "0 9 * * 1-5", timezone="Europe/Paris", name="standup")
    # Tuesday 09:00 in Paris is 08:00 UTC in winter.
    assert daily.next_run_at == datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
    assert (await create(app, "@hourly")).next_run_at == MONDAY_NOON + timedelta(hours=1)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"cron": "* * * * * *"}, InvalidSchedule),  # seconds are not a unit
        ({"cron": "0 0 31 2 *"}, InvalidSchedule),
        ({"cron": "every day"}, InvalidSchedule),
        ({"timezone": "Mars/Olympus"}, InvalidSchedule),
        ({"name": "Nightly Report"}, InvalidSchedule),
        ({"kind": "nope"}, UnknownKind),
        ({"kind": "sleep", "payload": {"seconds": -1}}, InvalidPayload),
        ({"expires_after_seconds": 0}, InvalidSchedule),
        ({"expires_after_seconds": 367 * 24 * 3600}, InvalidSchedule),
    ],
)
async def test_a_schedule_whose_tasks_or_times_could_not_be_is_refused(
    app: Container, fields: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await create(app, **fields)
    assert list(await app.schedules().list("alice", 10)) == []


async def test_a_callback_the_http_kind_would_refuse_is_refused(app: Container) -> None:
    task = TaskTemplate(kind="echo", payload={}, callback_url="http://10.0.0.1/hook")
    with pytest.raises(InvalidTask, match="callback_url"):
        await app.create_schedule()(CreateSchedule("alice", "@daily", task))


async def test_a_due_schedule_submits_one_task_and_moves_on(
    app: Container, clock: FakeClock
) -> None:
    schedule = await create(app, payload={"report": "sales"})
    sweep = app.run_due_schedules()
    assert await sweep() == 0
    clock.advance(minutes=5)
    assert await sweep() == 1
    [task] = await tasks_of(app)
    assert (task.kind, task.payload, task.owner) == ("echo", {"report": "sales"}, "alice")
    assert task.idempotency_key == f"schedule:{schedule.id}:20260105T120500Z"
    assert task.schedule_id == schedule.id
    moved = await app.manage_schedules().get("alice", schedule.id)
    assert (moved.last_run_at, moved.last_task_id) == (clock.now(), task.id)
    assert moved.next_run_at == clock.now() + timedelta(minutes=5)
    assert await sweep() == 0


async def test_sweeps_racing_on_one_occurrence_submit_one_task(
    app: Container, clock: FakeClock
) -> None:
    await create(app)
    clock.advance(minutes=5)
    sweep = app.run_due_schedules()
    assert sum(await asyncio.gather(sweep(), sweep(), sweep())) == 1
    assert len(await tasks_of(app)) == 1


async def test_a_sweep_stopped_after_the_submit_submits_no_second_task(
    app: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = await create(app)
    clock.advance(minutes=5)

    async def outage(*args: Any) -> bool:
        raise StorageUnavailable("down")

    with monkeypatch.context() as patched:
        patched.setattr(MemorySchedules, "ran", outage)
        with pytest.raises(StorageUnavailable):
            await app.run_due_schedules()()
    assert await app.run_due_schedules()() == 1
    [task] = await tasks_of(app)
    assert (await app.manage_schedules().get("alice", schedule.id)).last_task_id == task.id


async def test_times_missed_while_nothing_ran_make_one_task(
    app: Container, clock: FakeClock
) -> None:
    schedule = await create(app)
    clock.advance(hours=2, minutes=1)
    assert await app.run_due_schedules()() == 1
    [task] = await tasks_of(app)
    assert task.idempotency_key.endswith("T120500Z")  # the first time missed
    moved = await app.manage_schedules().get("alice", schedule.id)
    assert moved.next_run_at == MONDAY_NOON + timedelta(hours=2, minutes=5)


async def test_each_task_of_a_schedule_expires_after_its_occurrence(
    app: Container, clock: FakeClock
) -> None:
    schedule = await create(app, expires_after_seconds=120)
    assert schedule.task.expires_after_seconds == 120
    clock.advance(minutes=6)  # the sweep comes a minute late
    assert await app.run_due_schedules()() == 1
    [task] = await tasks_of(app)
    assert task.expires_at == MONDAY_NOON + timedelta(minutes=5, seconds=120)
    # A repeat of the occurrence's submit (a racing sweep) is the same request.
    command = SubmitTask(
        owner="alice",
        kind="echo",
        payload={"n": 1},
        idempotency_key=task.idempotency_key,
        expires_at=task.expires_at,
        schedule_id=schedule.id,
    )
    assert (await app.submit_task()(command)).task.id == task.id


async def test_each_task_of_a_schedule_goes_to_its_queue(clock: FakeClock) -> None:
    app = create_container(Settings(storage_url="memory://", queues=["default", "images"]))
    app.clock.override(providers.Object(clock))
    app.publish_committed.override(providers.Object(HeldRelay()))
    await create(app, queue="images")
    clock.advance(minutes=5)
    assert await app.run_due_schedules()() == 1
    [task] = await tasks_of(app)
    assert task.queue == "images"


async def test_an_occurrence_of_a_queue_the_deployment_no_longer_has_is_skipped(
    app: Container, clock: FakeClock
) -> None:
    """Created while the deployment had the queue "images", due once it is gone."""
    schedule = Schedule.create(
        id=uuid.uuid4(),
        owner="alice",
        cron="*/5 * * * *",
        timezone="UTC",
        task=TaskTemplate(kind="echo", payload={}, queue="images"),
        first_run_at=clock.now() + timedelta(minutes=5),
        now=clock.now(),
    )
    await app.schedules().add(schedule)
    clock.advance(minutes=5)
    assert await app.run_due_schedules()() == 1
    assert await tasks_of(app) == []
    skipped = "taskport_schedule_occurrences_skipped_total"
    assert metric(app, skipped, kind="echo", reason="unknown_queue") == 1


async def test_an_occurrence_whose_task_would_have_expired_before_the_sweep_gets_none(
    app: Container, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    schedule = await create(app, expires_after_seconds=60)
    clock.advance(minutes=6)  # the occurrence at 12:05 expired at 12:06
    with caplog.at_level(logging.WARNING, "taskport.schedules"):
        assert await app.run_due_schedules()() == 1
    assert "it expired at 2026-01-05 12:06:00+00:00, before a sweep came" in caplog.text
    assert await tasks_of(app) == []
    skipped = "taskport_schedule_occurrences_skipped_total"
    assert metric(app, skipped, kind="echo", reason="expired") == 1
    moved = await app.manage_schedules().get("alice", schedule.id)
    assert (moved.next_run_at, moved.last_task_id) == (clock.now() + timedelta(minutes=4), None)
    clock.advance(minutes=4)  # in time for the next one
    assert await app.run_due_schedules()() == 1
    [task] = await tasks_of(app)
    assert task.expires_at == clock.now() + timedelta(seconds=60)


async def test_a_paused_schedule_submits_nothing_and_resumes_from_now(
    app: Container, clock: FakeClock
) -> None:
    schedule = await create(app)
    manage = app.manage_schedules()
    assert (await manage.pause("alice", schedule.id)).paused
    clock.advance(minutes=30)
    assert await app.run_due_schedules()() == 0
    resumed = await manage.resume("alice", schedule.id)
    assert not resumed.paused
    assert resumed.next_run_at == clock.now() + timedelta(minutes=5)
    assert await tasks_of(app) == []


async def test_a_schedule_whose_kind_is_gone_logs_and_moves_on(
    app: Container, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    schedule = await create(app, kind="predict", payload={"features": {"x": 1}})
    app.registry.override(
        providers.Singleton(KindRegistry, [k for k in BUILTIN_KINDS if k.name != "predict"])
    )
    app.new_tasks.reset()
    app.submit_task.reset()
    app.run_due_schedules.reset()
    clock.advance(minutes=5)
    with caplog.at_level(logging.WARNING, "taskport.schedules"):
        assert await app.run_due_schedules()() == 1
    assert f"schedule {schedule.id}: no task for" in caplog.text
    assert await tasks_of(app) == []
    moved = await app.manage_schedules().get("alice", schedule.id)
    assert (moved.next_run_at, moved.last_task_id) == (clock.now() + timedelta(minutes=5), None)


async def test_a_schedule_whose_time_zone_cannot_be_read_is_paused(
    app: Container, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    schedule = await create(app)
    stored = app.storage().schedules_by_id[schedule.id]
    stored.timezone = "Gone/Away"
    clock.advance(minutes=5)
    with caplog.at_level(logging.ERROR, "taskport.schedules"):
        assert await app.run_due_schedules()() == 0
    assert "paused" in caplog.text
    assert (await app.manage_schedules().get("alice", schedule.id)).paused
    assert len(await tasks_of(app)) == 1  # the time that had come still got its task


async def test_a_schedule_deleted_or_paused_while_a_sweep_runs_submits_no_task(
    app: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, deleted, paused = await create(app), await create(app), await create(app)
    clock.advance(minutes=5)
    manage = app.manage_schedules()
    submit = SubmitTaskHandler.__call__

    async def owner_acts_during_the_first_submit(
        handler: SubmitTaskHandler, command: SubmitTask
    ) -> Submitted:
        if command.idempotency_key == first.occurrence_key():
            await manage.delete("alice", deleted.id)
            await manage.pause("alice", paused.id)
        return await submit(handler, command)

    monkeypatch.setattr(SubmitTaskHandler, "__call__", owner_acts_during_the_first_submit)
    assert await app.run_due_schedules()() == 1
    [task] = await tasks_of(app)
    assert task.idempotency_key == first.occurrence_key()
    assert (await manage.get("alice", paused.id)).last_task_id is None


@pytest.mark.parametrize("limit", [3, 1000])
async def test_a_page_of_schedules_ends_early_once_their_payloads_pass_the_byte_limit(
    app: Container, clock: FakeClock, limit: int
) -> None:
    """Each page holds the schedules whose payloads fit in 1,000 bytes of JSON (one at
    least, however large), and the pages still give every schedule once, newest first."""
    lengths = [300, 300, 300, 2000, 100, 100]
    created = [await create(app, payload="x" * length) for length in lengths]
    manage = ManageSchedules(app.schedules(), app.recurrence(), clock, max_page_bytes=1000)
    pages, before = [], None
    while True:
        page = await manage.list("alice", limit, before)
        pages.append(list(page.items))
        if (before := page.next_before) is None:
            break
    assert [[len(s.task.payload) for s in items] for items in pages] == [
        [100, 100],
        [2000],
        [300, 300, 300],
    ]
    listed = [schedule.id for items in pages for schedule in items]
    assert listed == [schedule.id for schedule in reversed(created)]


async def test_a_schedule_made_in_the_second_pass_of_a_repeated_hour_is_first_due_ahead(
    app: Container, clock: FakeClock
) -> None:
    # 2026-10-25, 01:10 UTC: 02:10 in Paris for the second time (03:00 went back to 02:00).
    clock.current = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)
    daily = await create(app, "30 2 * * *", timezone="Europe/Paris")
    assert daily.next_run_at == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def metric(app: Container, name: str, **labels: str) -> float | None:
    return app.metrics().registry.get_sample_value(name, labels)


async def test_each_task_of_a_schedule_is_counted_once_however_many_sweeps_race(
    app: Container, clock: FakeClock
) -> None:
    await create(app)
    clock.advance(minutes=5)
    sweep = app.run_due_schedules()
    await asyncio.gather(sweep(), sweep(), sweep())
    clock.advance(minutes=5)
    await sweep()
    assert metric(app, "taskport_schedule_tasks_submitted_total", kind="echo") == 2


async def test_an_occurrence_skipped_is_counted_once_by_kind_and_reason(
    app: Container, clock: FakeClock
) -> None:
    await create(app, kind="predict", payload={"features": {"x": 1}})
    app.registry.override(
        providers.Singleton(KindRegistry, [k for k in BUILTIN_KINDS if k.name != "predict"])
    )
    app.new_tasks.reset()
    app.submit_task.reset()
    app.run_due_schedules.reset()
    clock.advance(minutes=5)
    sweep = app.run_due_schedules()
    await asyncio.gather(sweep(), sweep(), sweep())
    skipped = "taskport_schedule_occurrences_skipped_total"
    assert metric(app, skipped, kind="predict", reason="unknown_kind") == 1
    assert metric(app, "taskport_schedule_tasks_submitted_total", kind="predict") is None


async def test_an_occurrence_whose_payload_is_refused_is_counted_as_skipped(
    app: Container, clock: FakeClock
) -> None:
    schedule = await create(app, kind="sleep", payload={"seconds": 1})
    app.storage().schedules_by_id[schedule.id].task = TaskTemplate(
        kind="sleep", payload={"seconds": -1}
    )
    clock.advance(minutes=5)
    assert await app.run_due_schedules()() == 1
    skipped = "taskport_schedule_occurrences_skipped_total"
    assert metric(app, skipped, kind="sleep", reason="invalid_payload") == 1


async def test_the_schedule_lag_is_how_late_the_earliest_due_schedule_is(
    app: Container, clock: FakeClock
) -> None:
    lag = app.get_schedule_lag()
    assert await lag() is None
    paused = await create(app, "*/5 * * * *")
    await app.manage_schedules().pause("alice", paused.id)
    await create(app, "*/5 * * * *")
    await create(app, "*/10 * * * *")
    clock.advance(minutes=12)  # due since 12:05 and 12:10; the paused one since 12:05
    assert await lag() == timedelta(minutes=7)
    app.metrics().observe_deployment(await app.observe_deployment()())
    assert metric(app, "taskport_schedule_lag_seconds") == 420
    await app.run_due_schedules()()
    assert await lag() is None
    app.metrics().observe_deployment(await app.observe_deployment()())
    assert metric(app, "taskport_schedule_lag_seconds") == 0
