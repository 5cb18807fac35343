"""Builders of domain objects and fakes for tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from adapters.system import Uuid7Generator
from application.ports.outbox import OutboxMessage
from domain.task import Task
from domain.values import DEFAULT_QUEUE, RetryPolicy

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_ids = Uuid7Generator()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime = T0) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


class HeldRelay:
    """A relay trigger whose fast path publishes nothing, as if the process stopped right
    after each commit: the messages stay in the outbox for the sweep."""

    def __init__(self) -> None:
        self.handed: list[OutboxMessage] = []

    def notify(self, messages: Sequence[OutboxMessage]) -> None:
        self.handed.extend(messages)

    async def drain(self) -> None:
        pass


def new_id() -> Any:
    return _ids.new_id()


def make_task(
    *,
    owner: str = "alice",
    kind: str = "echo",
    payload: Any = None,
    now: datetime = T0,
    run_at: datetime | None = None,
    max_attempts: int = 3,
    timeout: timedelta = timedelta(seconds=30),
    idempotency_key: str | None = None,
    base_delay: timedelta = timedelta(seconds=1),
    callback_url: str | None = None,
    schedule_id: UUID | None = None,
    request_id: str | None = None,
    expires_at: datetime | None = None,
    queue: str = DEFAULT_QUEUE,
) -> Task:
    task = Task.submit(
        id=new_id(),
        owner=owner,
        kind=kind,
        payload={"n": 1, "nested": {"list": [1, "two", None, 3.5]}} if payload is None else payload,
        now=now,
        retry_policy=RetryPolicy(
            max_attempts=max_attempts, base_delay=base_delay, max_delay=timedelta(minutes=5)
        ),
        timeout=timeout,
        run_at=run_at,
        idempotency_key=idempotency_key,
        request_fingerprint="f" * 64 if idempotency_key else None,
        callback_url=callback_url,
        schedule_id=schedule_id,
        request_id=request_id,
        expires_at=expires_at,
        queue=queue,
    )
    task.pull_events()
    return task


def make_message(
    body: bytes = b'{"task_id": "00000000-0000-0000-0000-000000000000"}',
    topic: str = "tasks",
    created_at: datetime = T0,
) -> OutboxMessage:
    return OutboxMessage(id=new_id(), topic=topic, body=body, created_at=created_at)
