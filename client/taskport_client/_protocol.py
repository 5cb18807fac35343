"""What the sync and async clients share: the request each call sends, how an answer is
read, and when a failed request is sent again."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import RetryCallState, stop_before_delay, wait_exponential

from taskport_client.errors import (
    ApiError,
    Conflict,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    Unreachable,
)
from taskport_client.models import NewTask

DEFAULT_URL = "http://127.0.0.1:8000"
"""The server a client talks to when neither it nor ``TASKPORT_URL`` names one."""
MAX_WAIT_SECONDS = 60
"""The longest a read of a task waits on the server for its end (``?wait=``)."""
MAX_PAGE = 1000
"""The most tasks one page of the list, or one bulk change, may hold."""
MAX_BATCH = 1000
"""The most tasks one batch submit may hold."""

_ERRORS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
}


@dataclass(frozen=True)
class Call:
    """One request. ``repeatable``: its effect happens once however many times it is sent
    (a read; a submit, which always carries idempotency keys), so it is sent again after
    any failure on the way; any other is sent again only when it surely did nothing (the
    connection was never made, or the server answered 503)."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    repeatable: bool = False
    read_timeout: float | None = None
    """For a read that waits on the server: longer than the wait."""


def submit(task: NewTask) -> Call:
    key = task.idempotency_key or _new_key()
    headers = {"Idempotency-Key": key}
    return Call("POST", "/v1/tasks", json=task.body(), headers=headers, repeatable=True)


def submit_batch(tasks: Sequence[NewTask]) -> Call:
    if not 1 <= len(tasks) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} tasks, not {len(tasks)}")
    items = [
        {**task.body(), "idempotency_key": task.idempotency_key or _new_key()} for task in tasks
    ]
    return Call("POST", "/v1/tasks/batch", json={"tasks": items}, repeatable=True)


def get(task_id: str, wait: float | None = None) -> Call:
    if wait is None:
        return Call("GET", f"/v1/tasks/{task_id}", repeatable=True)
    return Call(
        "GET",
        f"/v1/tasks/{task_id}",
        params={"wait": round(wait, 3)},
        repeatable=True,
        read_timeout=wait + 30,
    )


def page(filters: dict[str, Any], limit: int, cursor: str | None) -> Call:
    return _page("/v1/tasks", "tasks", filters, limit, cursor)


def schedules_page(limit: int, cursor: str | None) -> Call:
    return _page("/v1/schedules", "schedules", {}, limit, cursor)


def _page(path: str, items: str, query: dict[str, Any], limit: int, cursor: str | None) -> Call:
    """A page of up to ``limit`` ``items`` of the list at ``path``, from ``cursor``."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"a page holds 1 to {MAX_PAGE} {items}, not {limit}")
    params = {**query, "limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", path, params=params, repeatable=True)


def create_schedule(body: dict[str, Any]) -> Call:
    return Call("POST", "/v1/schedules", json=body)


def schedule(schedule_id: str, action: str | None = None) -> Call:
    """Read the schedule, or ``pause`` or ``resume`` it."""
    if action is None:
        return Call("GET", f"/v1/schedules/{schedule_id}", repeatable=True)
    return Call("POST", f"/v1/schedules/{schedule_id}/{action}")


def delete_schedule(schedule_id: str) -> Call:
    return Call("DELETE", f"/v1/schedules/{schedule_id}")


def change(task_id: str, action: str) -> Call:
    return Call("POST", f"/v1/tasks/{task_id}/{action}")


def change_all(action: str, filters: dict[str, Any], limit: int) -> Call:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"a change takes 1 to {MAX_PAGE} tasks at a time, not {limit}")
    return Call("POST", f"/v1/tasks/{action}", json={**filters, "limit": limit})


def delete(task_id: str) -> Call:
    return Call("DELETE", f"/v1/tasks/{task_id}")


def stats() -> Call:
    return Call("GET", "/v1/stats", repeatable=True)


def kinds() -> Call:
    return Call("GET", "/v1/kinds", repeatable=True)


def workers() -> Call:
    return Call("GET", "/v1/workers", repeatable=True)


def filters(
    status: str | Sequence[str] | None,
    kind: str | None,
    queue: str | None,
    schedule_id: str | None,
) -> dict[str, Any]:
    """The filters of a list or a change to many tasks, the unset ones left out."""
    statuses = [status] if isinstance(status, str) else list(status or [])
    given = {"status": statuses or None, "kind": kind, "queue": queue, "schedule_id": schedule_id}
    return {name: value for name, value in given.items() if value is not None}


def read(response: httpx.Response) -> Any:
    """The JSON of a successful answer (``None`` for 204); a refusal as its ``ApiError``."""
    if response.is_success:
        return response.json() if response.status_code != 204 else None
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    if response.status_code == 503:
        raise ServiceUnavailable(503, problem, _seconds(response.headers.get("Retry-After")))
    raise _ERRORS.get(response.status_code, ApiError)(response.status_code, problem)


def timeout(default: httpx.Timeout, call: Call) -> httpx.Timeout | Any:
    """The client's timeouts, with a read long enough for a read that waits on the server."""
    if call.read_timeout is None or default.read is None:
        return httpx.USE_CLIENT_DEFAULT
    read = max(default.read, call.read_timeout)
    return httpx.Timeout(connect=default.connect, read=read, write=default.write, pool=default.pool)


def unreachable(url: str, error: httpx.TransportError) -> Unreachable:
    return Unreachable(f"cannot reach {url}: {error or type(error).__name__}")


def retrying(call: Call, retry_for: float) -> dict[str, Any]:
    """Arguments of tenacity's ``Retrying`` and ``AsyncRetrying`` for ``call``: tried again
    with a backoff from 0.1 s to 2 s (or as long as a 503 asks), as long as the next send
    would start within ``retry_for`` seconds of the first; then the last error is raised."""
    return {
        "retry": _may_send_again(call),
        "wait": _backoff,
        "stop": stop_before_delay(retry_for),
        "reraise": True,
    }


def deadline(timeout: float | None) -> Callable[[], float | None]:
    """Seconds left before ``timeout`` (from now) is over; ``None`` when there is none."""
    if timeout is None:
        return lambda: None
    ends = time.monotonic() + timeout
    return lambda: max(ends - time.monotonic(), 0.0)


def next_wait(left: float | None) -> float:
    return MAX_WAIT_SECONDS if left is None else min(left, MAX_WAIT_SECONDS)


_exponential = wait_exponential(multiplier=0.1, max=2)


def _backoff(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    asked = error.retry_after if isinstance(error, ServiceUnavailable) else None
    return max(_exponential(state), asked or 0.0)


def _may_send_again(call: Call) -> Callable[[RetryCallState], bool]:
    def may(state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ServiceUnavailable):
            return True
        if not isinstance(error, Unreachable):
            return False
        cause = error.__cause__
        return call.repeatable or isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout)

    return may


def _new_key() -> str:
    return uuid.uuid4().hex


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the backoff decides
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None
