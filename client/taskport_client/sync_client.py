"""The client for code without asyncio: the same calls as ``AsyncClient``, blocking."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx
from tenacity import Retrying

from taskport_client import _protocol as protocol
from taskport_client.errors import TaskCancelled, TaskFailed, WaitTimedOut
from taskport_client.models import NewTask, Schedule, Task, schedule_body


class Client:
    """Taskport's API: submit tasks, read them, wait for their results,
    list, cancel, retry and delete them, and manage their schedules.

    ``url`` is the server (``TASKPORT_URL`` when not given, else the local default);
    ``api_key`` is sent as a bearer token (``TASKPORT_API_KEY`` when not given), as the
    ``taskport`` command line reads them. A request that fails for
    a passing reason (the server unreachable or restarting, a 503 while its database or
    broker is down) is sent again for up to ``retry_for`` seconds when that cannot do it
    twice: reads and submits always (every submit carries an idempotency key, made up when
    none is given), other changes only when the request surely did nothing. Then the last
    error is raised: ``Unreachable``, or the ``ApiError`` of the server's refusal
    (``NotFound``, ``Conflict``, ``InvalidRequest``…). ``http`` is an ``httpx.Client``
    of the caller's (its own base URL, transport, timeouts), used instead of a new one and
    left open."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry_for: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        url = url or os.environ.get("TASKPORT_URL") or protocol.DEFAULT_URL
        api_key = api_key or os.environ.get("TASKPORT_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._url = url.rstrip("/")
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=self._url, timeout=timeout)
        self._headers = headers
        self._retry_for = retry_for

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def submit(
        self,
        kind: str,
        payload: Any = None,
        *,
        queue: str | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        timeout_seconds: float | None = None,
        callback_url: str | None = None,
        expires_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """Submits a task and returns it as stored (QUEUED, or SCHEDULED for a later
        ``run_at``); with the ``idempotency_key`` of an earlier submit, that task."""
        task = NewTask(
            kind,
            payload,
            queue=queue,
            run_at=run_at,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
            callback_url=callback_url,
            expires_at=expires_at,
            idempotency_key=idempotency_key,
        )
        return Task.from_json(self._send(protocol.submit(task)))

    def submit_many(self, tasks: Sequence[NewTask]) -> list[Task]:
        """Submits 1 to 1000 tasks in one request, all stored or none; returns them in the
        order given."""
        answer = self._send(protocol.submit_batch(tasks))
        return [Task.from_json(item) for item in answer["items"]]

    def get(self, task_id: str) -> Task:
        return Task.from_json(self._send(protocol.get(task_id)))

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """The task once it has finished (SUCCEEDED, FAILED or CANCELLED), or as it is when
        ``timeout`` seconds have passed (``None``: as long as it takes). The server holds
        each read until the task ends, up to a minute: no polling."""
        left = protocol.deadline(timeout)
        while True:
            task = Task.from_json(self._send(protocol.get(task_id, protocol.next_wait(left()))))
            if task.finished or left() == 0:
                return task

    def result(self, task_id: str, timeout: float | None = None) -> Any:
        """The result of the task once it has succeeded. Raises ``TaskFailed`` or
        ``TaskCancelled`` when it ended otherwise, ``WaitTimedOut`` (a ``TimeoutError``)
        when it had not ended within ``timeout`` seconds."""
        task = self.wait(task_id, timeout)
        if task.status == "SUCCEEDED":
            return task.result
        if task.status == "FAILED":
            raise TaskFailed(task)
        if task.status == "CANCELLED":
            raise TaskCancelled(task)
        raise WaitTimedOut(task)

    def tasks(
        self,
        *,
        status: str | Sequence[str] | None = None,
        kind: str | None = None,
        queue: str | None = None,
        schedule_id: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Task]:
        """Every task that matches, newest first, read a page of ``page_size`` at a time."""
        matching = protocol.filters(status, kind, queue, schedule_id)
        for item in self._items(lambda cursor: protocol.page(matching, page_size, cursor)):
            yield Task.from_json(item)

    def cancel(self, task_id: str) -> Task:
        """Cancels a scheduled or queued task; asks a running one to stop (``Conflict``
        when it has finished)."""
        return Task.from_json(self._send(protocol.change(task_id, "cancel")))

    def retry(self, task_id: str) -> Task:
        """Queues a failed or cancelled task again, with fresh attempts."""
        return Task.from_json(self._send(protocol.change(task_id, "retry")))

    def delete(self, task_id: str) -> None:
        """Deletes a finished task, its payload and result (``Conflict`` for one that has
        not finished)."""
        self._send(protocol.delete(task_id))

    def cancel_all(
        self,
        *,
        status: str | Sequence[str] | None = None,
        kind: str | None = None,
        queue: str | None = None,
        schedule_id: str | None = None,
    ) -> list[str]:
        """Cancels every waiting task that matches (``status``: SCHEDULED and/or QUEUED,
        both by default), 1000 at a time; returns their ids."""
        return self._change_all("cancel", protocol.filters(status, kind, queue, schedule_id))

    def retry_all(
        self,
        *,
        status: str | Sequence[str] | None = None,
        kind: str | None = None,
        queue: str | None = None,
        schedule_id: str | None = None,
    ) -> list[str]:
        """Retries every finished task that matches (``status``: FAILED, the default,
        and/or CANCELLED), 1000 at a time; returns their ids."""
        return self._change_all("retry", protocol.filters(status, kind, queue, schedule_id))

    def stats(self) -> dict[str, Any]:
        """The caller's tasks counted by status, kind and queue, and the queues' waits."""
        answer: dict[str, Any] = self._send(protocol.stats())
        return answer

    def kinds(self) -> list[dict[str, Any]]:
        """The kinds the deployment runs: ``name``, ``description``, ``payload_schema``."""
        answer: dict[str, Any] = self._send(protocol.kinds())
        return list(answer["items"])

    def workers(self) -> list[dict[str, Any]]:
        """The workers the deployment knows of, most recently started first, each with its
        ``status`` (``alive`` or ``lost``), ``queues`` and ``running`` tasks."""
        answer: dict[str, Any] = self._send(protocol.workers())
        return list(answer["items"])

    def create_schedule(
        self,
        kind: str,
        cron: str,
        payload: Any = None,
        *,
        timezone: str | None = None,
        name: str | None = None,
        paused: bool | None = None,
        queue: str | None = None,
        max_attempts: int | None = None,
        timeout_seconds: float | None = None,
        callback_url: str | None = None,
        expires_after_seconds: float | None = None,
    ) -> Schedule:
        """A recurring task: ``kind`` and ``payload`` submitted at each time of ``cron`` in
        ``timezone`` (UTC by default). ``name``, unique among the caller's schedules, makes
        a second create of it a ``Conflict``."""
        options = {
            "timezone": timezone,
            "name": name,
            "paused": paused,
            "queue": queue,
            "max_attempts": max_attempts,
            "timeout_seconds": timeout_seconds,
            "callback_url": callback_url,
            "expires_after_seconds": expires_after_seconds,
        }
        call = protocol.create_schedule(schedule_body(kind, cron, payload, options))
        return Schedule.from_json(self._send(call))

    def get_schedule(self, schedule_id: str) -> Schedule:
        return Schedule.from_json(self._send(protocol.schedule(schedule_id)))

    def schedules(self, *, page_size: int = 100) -> Iterator[Schedule]:
        """Every schedule of the caller, newest first, a page of ``page_size`` at a time."""
        for item in self._items(lambda cursor: protocol.schedules_page(page_size, cursor)):
            yield Schedule.from_json(item)

    def pause_schedule(self, schedule_id: str) -> Schedule:
        """Stops submitting its tasks (the tasks already submitted are not touched)."""
        return Schedule.from_json(self._send(protocol.schedule(schedule_id, "pause")))

    def resume_schedule(self, schedule_id: str) -> Schedule:
        """Submits its tasks again, from its next time ahead."""
        return Schedule.from_json(self._send(protocol.schedule(schedule_id, "resume")))

    def delete_schedule(self, schedule_id: str) -> None:
        """Deletes the schedule; the tasks it submitted are kept."""
        self._send(protocol.delete_schedule(schedule_id))

    def _items(self, page: Callable[[str | None], protocol.Call]) -> Iterator[Any]:
        """The items of every page, following ``next_cursor``."""
        cursor: str | None = None
        while True:
            answer = self._send(page(cursor))
            yield from answer["items"]
            cursor = answer["next_cursor"]
            if cursor is None:
                return

    def _change_all(self, action: str, matching: dict[str, Any]) -> list[str]:
        changed: list[str] = []
        while True:
            answer = self._send(protocol.change_all(action, matching, protocol.MAX_PAGE))
            changed.extend(answer["ids"])
            if not answer["more"]:
                return changed

    def _send(self, call: protocol.Call) -> Any:
        for attempt in Retrying(**protocol.retrying(call, self._retry_for)):
            with attempt:
                try:
                    response = self._http.request(
                        call.method,
                        call.path,
                        params=call.params,
                        json=call.json,
                        headers={**self._headers, **call.headers},
                        timeout=_timeout(self._http, call),
                    )
                except httpx.TransportError as error:
                    raise protocol.unreachable(self._url, error) from error
                return protocol.read(response)
        raise AssertionError("tenacity returns or raises")  # pragma: no cover


def _timeout(http: httpx.Client, call: protocol.Call) -> Any:
    return protocol.timeout(http.timeout, call)
