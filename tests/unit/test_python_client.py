"""The Python client's retries, against answers made up by an httpx mock transport."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from taskport_client import AsyncClient, ServiceUnavailable, Unreachable
from taskport_client.models import NewTask

from tests.unasync_client import CLIENT, sync_source

TASK = {
    "id": "0194e3a4-0000-7000-8000-000000000001",
    "kind": "echo",
    "status": "QUEUED",
    "payload": None,
    "attempts": 0,
    "max_attempts": 3,
    "created_at": "2026-12-08T10:00:00Z",
    "updated_at": "2026-12-08T10:00:00Z",
}
UNAVAILABLE = {"type": "/problems/storage-unavailable", "title": "Storage unavailable"}

Answer = Callable[[httpx.Request], httpx.Response]


def client(answers: list[Answer], seen: list[httpx.Request], retry_for: float = 5) -> AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://taskport")
    return AsyncClient(http=http, retry_for=retry_for)


def unavailable(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json=UNAVAILABLE, headers={"Retry-After": "0"})


def created(request: httpx.Request) -> httpx.Response:
    return httpx.Response(201, json=TASK)


def cancelled(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={**TASK, "status": "CANCELLED"})


def read_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("no answer", request=request)


def refused_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def test_a_submit_is_sent_again_with_the_same_key_until_it_is_stored() -> None:
    seen: list[httpx.Request] = []
    taskport = client([unavailable, read_timeout, created], seen)
    task = await taskport.submit("echo")
    assert task.status == "QUEUED"
    keys = {request.headers["Idempotency-Key"] for request in seen}
    assert len(seen) == 3 and len(keys) == 1


async def test_each_task_of_a_batch_carries_a_key_of_its_own_kept_across_sends() -> None:
    seen: list[httpx.Request] = []

    def stored(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"items": [TASK, TASK]})

    taskport = client([read_timeout, stored], seen)
    await taskport.submit_many([NewTask("echo"), NewTask("echo", idempotency_key="mine")])
    bodies = [json.loads(request.content) for request in seen]
    assert bodies[0] == bodies[1]
    keys = [item["idempotency_key"] for item in bodies[0]["tasks"]]
    assert keys[1] == "mine" and keys[0] not in ("", "mine")


async def test_a_change_is_not_sent_again_once_it_may_have_been_done() -> None:
    seen: list[httpx.Request] = []
    taskport = client([read_timeout, cancelled], seen)
    with pytest.raises(Unreachable):
        await taskport.cancel(TASK["id"])
    assert len(seen) == 1


async def test_a_change_is_sent_again_when_it_surely_did_nothing() -> None:
    seen: list[httpx.Request] = []
    taskport = client([refused_connection, unavailable, cancelled], seen)
    assert (await taskport.cancel(TASK["id"])).status == "CANCELLED"
    assert len(seen) == 3


async def test_the_last_refusal_is_raised_once_the_retries_are_over() -> None:
    seen: list[httpx.Request] = []
    taskport = client([unavailable] * 50, seen, retry_for=0)
    with pytest.raises(ServiceUnavailable) as refused:
        await taskport.get(TASK["id"])
    assert (refused.value.retry_after, len(seen)) == (0, 1)
    assert refused.value.title == "Storage unavailable"


def test_the_sync_client_is_the_async_one_without_async() -> None:
    written = (CLIENT / "sync_client.py").read_text()
    assert written == sync_source(), "run: python -m tests.unasync_client"
