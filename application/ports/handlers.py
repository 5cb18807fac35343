from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol
from uuid import UUID

from attrs import field, frozen

from domain.errors import InvalidTask
from domain.values import JsonValue, check_progress


@frozen
class ProgressUpdate:
    fraction: float
    message: str


class ProgressSlot:
    """The latest progress a handler reported and nobody wrote yet. Thread-safe: a
    handler in a thread puts, the worker's loop takes (at most once a second or so), so a
    handler may report as often as it likes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: ProgressUpdate | None = None

    def put(self, update: ProgressUpdate) -> None:
        with self._lock:
            self._pending = update

    def take(self) -> ProgressUpdate | None:
        with self._lock:
            update, self._pending = self._pending, None
            return update

    def put_back(self, update: ProgressUpdate) -> None:
        """Return an update whose write failed, unless a newer one arrived meanwhile."""
        with self._lock:
            if self._pending is None:
                self._pending = update


@frozen
class TaskContext:
    """What a handler knows about the attempt it runs, and how it talks back.

    ``cancelled`` is set when the attempt should stop: cancel of the task was requested, its
    time ran out, or the worker shuts down. It is a ``threading.Event``: a handler running in
    a thread polls ``cancelled.is_set()`` or waits on it; async handlers are also cancelled
    (``asyncio.CancelledError``).
    ``report_progress`` may be called from the loop or from any thread.
    """

    task_id: UUID
    owner: str
    kind: str
    attempt: int
    max_attempts: int
    cancelled: threading.Event = field(factory=threading.Event)
    progress: ProgressSlot = field(factory=ProgressSlot)

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Note how far this attempt got: ``fraction`` in [0, 1] and a short message
        (at most 200 characters). Raises ``ValueError`` for anything else."""
        try:
            check_progress(fraction, message)
        except InvalidTask as exc:
            raise ValueError(str(exc)) from None
        self.progress.put(ProgressUpdate(float(fraction), message))


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
