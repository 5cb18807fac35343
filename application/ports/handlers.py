from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol
from uuid import UUID

from attrs import frozen

from domain.values import JsonValue


@frozen
class TaskContext:
    """What a handler knows about the attempt it runs.

    ``cancelled`` is set when cancel of the running task was requested; async handlers are
    also cancelled (``asyncio.CancelledError``), handlers running in threads should poll it.
    """

    task_id: UUID
    owner: str
    kind: str
    attempt: int
    max_attempts: int
    cancelled: asyncio.Event


TaskHandler = Callable[[JsonValue, TaskContext], Awaitable[JsonValue]]
"""Runs one attempt of a task: takes the payload, returns a JSON-serialisable result.
Raising fails the attempt (``PermanentFailure`` fails it without retry)."""


@frozen
class KindInfo:
    name: str
    description: str
    payload_schema: dict[str, JsonValue] | None = None


class HandlerRegistry(Protocol):
    """The task kinds this deployment can run.

    - ``get`` returns the handler of a kind, or ``None`` when no such kind is registered.
    - ``validate`` raises ``UnknownKind`` or ``InvalidPayload`` (with every error found)
      for a payload that its kind would reject; it returns the payload as the handler
      will receive it.
    - ``kinds`` lists the registered kinds sorted by name.
    """

    def get(self, kind: str) -> TaskHandler | None: ...

    def validate(self, kind: str, payload: JsonValue) -> JsonValue: ...

    def kinds(self) -> Sequence[KindInfo]: ...
