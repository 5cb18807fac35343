"""Completions: a waiter for a task is woken by the commit of its outcome in this process."""

from __future__ import annotations

import asyncio

from application.completions import Completions
from domain import events
from tests.factories import T0, new_id
from tests.polling import eventually


async def test_a_waiter_is_woken_by_its_task_finishing_and_by_nothing_else() -> None:
    completions = Completions()
    task_id, other_id = new_id(), new_id()
    waiting = asyncio.create_task(completions.wait(task_id, 60))
    await eventually(lambda: task_id in completions._waiting)
    completions.committed(
        [
            events.TaskStarted(task_id, "echo", T0, attempt=1),
            events.TaskCancelled(other_id, "echo", T0),
        ]
    )
    assert not any(woken.is_set() for woken in completions._waiting[task_id])
    completions.committed([events.TaskSucceeded(task_id, "echo", T0, attempt=1, result=None)])
    assert await asyncio.wait_for(waiting, 5) is True
    assert completions._waiting == {}


async def test_a_wait_not_answered_in_time_is_false_and_forgotten() -> None:
    completions = Completions()
    assert await completions.wait(new_id(), 0.01) is False
    assert completions._waiting == {}


async def test_closing_ends_every_wait_and_any_later_one_at_once() -> None:
    completions = Completions()
    task_id = new_id()
    waiting = asyncio.create_task(completions.wait(task_id, 60))
    await eventually(lambda: task_id in completions._waiting)
    completions.close()
    assert await asyncio.wait_for(waiting, 5) is False
    assert await asyncio.wait_for(completions.wait(task_id, 60), 5) is False
