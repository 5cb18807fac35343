"""The client's view of tasks: what it sends (``NewTask``) and what it reads (``Task``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


@dataclass(frozen=True)
class NewTask:
    """A task to submit: its kind and payload, and the options the API takes (unset ones
    take the server's defaults). ``idempotency_key`` makes a repeat of the same request
    return the task it created; the client makes one up when none is given, so that it may
    send a submit again after a failure without creating a second task."""

    kind: str
    payload: Any = None
    queue: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    callback_url: str | None = None
    expires_at: datetime | None = None
    idempotency_key: str | None = None

    def body(self) -> dict[str, Any]:
        """The JSON of the submit, without the idempotency key (a header of its own for
        one task, a field of each item in a batch)."""
        body: dict[str, Any] = {"kind": self.kind, "payload": self.payload}
        options = {
            "queue": self.queue,
            "run_at": _moment(self.run_at),
            "max_attempts": self.max_attempts,
            "timeout_seconds": self.timeout_seconds,
            "callback_url": self.callback_url,
            "expires_at": _moment(self.expires_at),
        }
        body.update((name, value) for name, value in options.items() if value is not None)
        return body


@dataclass(frozen=True)
class Task:
    """A task as the API serves it. ``data`` is the whole document, fields added by later
    versions of the server included."""

    id: str
    kind: str
    status: str
    queue: str
    payload: Any
    result: Any
    error: dict[str, Any] | None
    """``type``, ``message`` and ``retryable`` of the last failed attempt."""
    attempts: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    run_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    progress: dict[str, Any] | None
    """``fraction``, ``message`` and ``updated_at``, as the handler last reported."""
    data: dict[str, Any]

    @property
    def finished(self) -> bool:
        """SUCCEEDED, FAILED or CANCELLED: nothing more happens to it unless retried."""
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        return cls(
            id=data["id"],
            kind=data["kind"],
            status=data["status"],
            queue=data.get("queue", "default"),
            payload=data.get("payload"),
            result=data.get("result"),
            error=data.get("error"),
            attempts=data["attempts"],
            max_attempts=data["max_attempts"],
            created_at=_parse(data["created_at"]),
            updated_at=_parse(data["updated_at"]),
            run_at=_parse_optional(data.get("run_at")),
            started_at=_parse_optional(data.get("started_at")),
            finished_at=_parse_optional(data.get("finished_at")),
            progress=data.get("progress"),
            data=data,
        )


@dataclass(frozen=True)
class Schedule:
    """A recurring task as the API serves it: ``kind`` and ``payload`` submitted at each
    time of ``cron`` in ``timezone``. ``data`` is the whole document."""

    id: str
    name: str | None
    cron: str
    timezone: str
    paused: bool
    kind: str
    payload: Any
    queue: str
    next_run_at: datetime
    """When its next task is submitted."""
    last_run_at: datetime | None
    last_task_id: str | None
    data: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        return cls(
            id=data["id"],
            name=data.get("name"),
            cron=data["cron"],
            timezone=data["timezone"],
            paused=data["paused"],
            kind=data["kind"],
            payload=data.get("payload"),
            queue=data.get("queue", "default"),
            next_run_at=_parse(data["next_run_at"]),
            last_run_at=_parse_optional(data.get("last_run_at")),
            last_task_id=data.get("last_task_id"),
            data=data,
        )


def schedule_body(kind: str, cron: str, payload: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The JSON of a new schedule; unset options take the server's defaults."""
    given = {name: value for name, value in options.items() if value is not None}
    return {"kind": kind, "cron": cron, "payload": payload, **given}


def _moment(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"a time must say its time zone: {value!r}")
    return value.isoformat()


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _parse_optional(value: str | None) -> datetime | None:
    return _parse(value) if value is not None else None
