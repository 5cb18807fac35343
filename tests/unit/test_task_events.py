"""Task events: with events on, each outcome of a task goes to the outbox, in the unit of
work that records it, as a message other systems hear on the broker."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from adapters.storage.memory import MemoryStorage
from adapters.system import Uuid7Generator
from application.errors import PoisonMessage
from application.messages import EVENTS_TOPIC, TaskEventMessage
from application.recorder import TaskRecorder
from domain.task import Task
from domain.values import TaskError
from tests.factories import T0, FakeClock, HeldRelay, make_task


async def record(publish_events: bool, *changes: tuple[Task, str]) -> list[Any]:
    """Commits each task after the change named (``start``, ``succeed``, ``fail``,
    ``cancel``) and returns the outbox messages of those commits."""
    storage = MemoryStorage()
    relay = HeldRelay()
    recorder = TaskRecorder(
        Uuid7Generator(), FakeClock(T0 + timedelta(seconds=9)), relay, publish_events=publish_events
    )
    for submitted, change in changes:
        async with storage.unit_of_work() as uow:
            await uow.tasks.add(submitted)
            await uow.commit()
        async with storage.unit_of_work() as uow:
            task = await uow.tasks.get(submitted.id)
            change_task(task, change)
            await recorder.commit(uow, saved=[task])
    return relay.handed


def change_task(task: Task, change: str) -> None:
    now = T0 + timedelta(seconds=1)
    if change == "succeed":
        task.start(now)
        task.succeed(now + timedelta(seconds=1), {"width": 640})
    elif change == "fail":
        task.start(now)
        task.fail(now + timedelta(seconds=1), TaskError("Boom", "it broke", retryable=True))
    elif change == "cancel":
        task.cancel(now)
    elif change == "start":
        task.start(now)


async def test_each_outcome_is_one_event_with_the_finished_task() -> None:
    nightly = uuid.uuid4()
    succeeded = make_task(kind="resize", owner="alice", schedule_id=nightly)
    failed = make_task(kind="resize", owner="bob", max_attempts=1)
    cancelled = make_task(kind="thumbs.small")
    messages = await record(True, (succeeded, "succeed"), (failed, "fail"), (cancelled, "cancel"))

    events = [json.loads(m.body) for m in messages if m.topic == EVENTS_TOPIC]
    assert [(e["type"], e["task"]["id"]) for e in events] == [
        ("task.succeeded", str(succeeded.id)),
        ("task.failed", str(failed.id)),
        ("task.cancelled", str(cancelled.id)),
    ]
    assert events[0] == {
        "id": str(messages[0].id),
        "type": "task.succeeded",
        "occurred_at": "2026-01-01T12:00:02Z",
        "task": {
            "id": str(succeeded.id),
            "owner": "alice",
            "kind": "resize",
            "status": "SUCCEEDED",
            "attempts": 1,
            "created_at": "2026-01-01T12:00:00Z",
            "finished_at": "2026-01-01T12:00:02Z",
            "result": {"width": 640},
            "error": None,
            "schedule_id": str(nightly),
        },
    }
    assert (events[1]["task"]["owner"], events[1]["task"]["schedule_id"]) == ("bob", None)
    assert events[1]["task"]["error"] == {
        "type": "Boom",
        "message": "it broke",
        "retryable": True,
    }
    assert len({m.id for m in messages}) == len(messages)


async def test_a_failure_with_attempts_left_and_a_start_are_not_outcomes() -> None:
    retried = make_task(max_attempts=3)
    started = make_task()
    messages = await record(True, (retried, "fail"), (started, "start"))
    assert messages == []  # the retry is dispatched once its backoff ends


async def test_no_events_unless_they_are_on() -> None:
    messages = await record(False, (make_task(), "succeed"), (make_task(), "cancel"))
    assert messages == []


async def test_an_event_message_tells_its_type_kind_and_task() -> None:
    task = make_task(kind="resize")
    (message,) = await record(True, (task, "succeed"))
    assert TaskEventMessage.decode(message.body) == TaskEventMessage(
        "task.succeeded", "resize", task.id
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"type": "task.failed"}',
        b'{"task": 1}',
        b'{"type": "task.failed", "task": {"kind": "echo", "id": 7}}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
    ],
)
def test_a_body_that_is_no_task_event_is_a_poison_message(body: bytes) -> None:
    with pytest.raises(PoisonMessage):
        TaskEventMessage.decode(body)
