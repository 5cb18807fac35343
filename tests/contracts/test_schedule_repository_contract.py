"""The ScheduleRepository port's contract, for every storage."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from application.errors import ScheduleNameTaken
from domain.schedule import Schedule, TaskTemplate
from tests.factories import T0
from tests.factories import new_id as uuid7

MINUTE = timedelta(minutes=1)


def schedule(
    owner: str = "alice", *, name: str | None = None, next_run_at: Any = T0, **fields: Any
) -> Schedule:
    return Schedule(
        id=uuid7(),
        owner=owner,
        name=name,
        cron="*/5 * * * *",
        timezone="Europe/Paris",
        task=TaskTemplate(
            kind="echo",
            payload={"n": [1, 2.5, "é", None], "a.b": {"$x": True}},
            max_attempts=2,
            timeout_seconds=1.5,
            callback_url="https://example.com/hook",
            expires_after_seconds=90.5,
            queue="images",
        ),
        next_run_at=next_run_at,
        created_at=T0 - MINUTE,
        updated_at=T0 - MINUTE,
        **fields,
    )


def fields_of(found: Schedule | None) -> dict[str, Any]:
    assert found is not None
    return {name: getattr(found, name) for name in Schedule.__attrs_attrs__.__dict__}


async def test_an_added_schedule_reads_back_as_it_was_for_its_owner_only(storage: Any) -> None:
    schedules = storage.schedules()
    added = schedule(name="nightly", last_task_id=uuid7(), last_run_at=T0 - 5 * MINUTE)
    await schedules.add(added)
    assert fields_of(await schedules.get("alice", added.id)) == fields_of(added)
    assert await schedules.get("bob", added.id) is None
    assert await schedules.get("alice", uuid7()) is None
    bare = schedule()
    bare.task = TaskTemplate(kind="echo", payload=None)
    await schedules.add(bare)
    assert (await schedules.get("alice", bare.id)).task == TaskTemplate("echo", None)


async def test_a_name_is_unique_per_owner(storage: Any) -> None:
    schedules = storage.schedules()
    await schedules.add(schedule(name="nightly"))
    with pytest.raises(ScheduleNameTaken):
        await schedules.add(schedule(name="nightly"))
    await schedules.add(schedule("bob", name="nightly"))
    await schedules.add(schedule())
    await schedules.add(schedule())  # unnamed schedules are many


async def test_list_pages_newest_first_for_one_owner(storage: Any) -> None:
    schedules = storage.schedules()
    mine = [schedule() for _ in range(5)]
    for one in [*mine, schedule("bob")]:
        await schedules.add(one)
    newest_first = [one.id for one in reversed(mine)]
    first = await schedules.list("alice", 3)
    assert [one.id for one in first] == newest_first[:3]
    rest = await schedules.list("alice", 3, before=first[-1].id)
    assert [one.id for one in rest] == newest_first[3:]


async def test_count_is_of_one_owner(storage: Any) -> None:
    schedules = storage.schedules()
    assert await schedules.count("alice") == 0
    for one in (schedule(), schedule(), schedule("bob")):
        await schedules.add(one)
    assert (await schedules.count("alice"), await schedules.count("bob")) == (2, 1)


async def test_delete_removes_the_owners_schedule_only(storage: Any) -> None:
    schedules = storage.schedules()
    one = schedule()
    await schedules.add(one)
    assert not await schedules.delete("bob", one.id)
    assert await schedules.delete("alice", one.id)
    assert not await schedules.delete("alice", one.id)
    assert await schedules.get("alice", one.id) is None


async def test_due_returns_the_schedules_not_paused_whose_time_came_earliest_first(
    storage: Any,
) -> None:
    schedules = storage.schedules()
    late = schedule(next_run_at=T0 - MINUTE)
    early = schedule("bob", next_run_at=T0 - 2 * MINUTE)
    now = schedule(next_run_at=T0)
    ahead = schedule(next_run_at=T0 + MINUTE)
    paused = schedule(next_run_at=T0 - 3 * MINUTE, paused=True)
    for one in (late, early, now, ahead, paused):
        await schedules.add(one)
    assert [one.id for one in await schedules.due(T0, 10)] == [early.id, late.id, now.id]
    assert [one.id for one in await schedules.due(T0, 1)] == [early.id]


async def test_ran_moves_the_schedule_on_only_from_the_occurrence_it_was_read_at(
    storage: Any,
) -> None:
    schedules = storage.schedules()
    one = schedule(next_run_at=T0)
    await schedules.add(one)
    task_id = uuid7()
    racing = [
        schedules.ran(one.id, T0, T0 + 5 * MINUTE, task_id, T0 + timedelta(seconds=1))
        for _ in range(3)
    ]
    assert sorted(await asyncio.gather(*racing)) == [False, False, True]
    moved = await schedules.get("alice", one.id)
    assert (moved.next_run_at, moved.last_run_at, moved.last_task_id) == (
        T0 + 5 * MINUTE,
        T0,
        task_id,
    )
    assert moved.updated_at == T0 + timedelta(seconds=1)
    assert not await schedules.ran(UUID(int=1), T0, T0, None, T0)
    assert await schedules.ran(one.id, T0 + 5 * MINUTE, T0 + 10 * MINUTE, None, T0)
    assert (await schedules.get("alice", one.id)).last_task_id is None


async def test_pause_and_resume(storage: Any) -> None:
    schedules = storage.schedules()
    one = schedule(next_run_at=T0)
    await schedules.add(one)
    assert await schedules.pause("bob", one.id, T0) is None
    paused = await schedules.pause("alice", one.id, T0 + MINUTE)
    assert (paused.paused, paused.updated_at, paused.next_run_at) == (True, T0 + MINUTE, T0)
    assert await schedules.due(T0 + MINUTE, 10) == []
    assert (await schedules.pause("alice", one.id, T0 + 2 * MINUTE)).updated_at == T0 + MINUTE
    assert await schedules.resume("bob", one.id, T0, T0) is None
    resumed = await schedules.resume("alice", one.id, T0 + 5 * MINUTE, T0 + 3 * MINUTE)
    assert (resumed.paused, resumed.next_run_at) == (False, T0 + 5 * MINUTE)
    # Resuming a schedule that runs changes nothing.
    again = await schedules.resume("alice", one.id, T0 + 10 * MINUTE, T0 + 4 * MINUTE)
    assert (again.next_run_at, again.updated_at) == (T0 + 5 * MINUTE, T0 + 3 * MINUTE)
