"""Through HTTP: tasks submitted, run by the embedded worker, read back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from logging import ERROR
from typing import Annotated, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Header

from domain.values import TaskStatus
from entrypoints.container import create_container
from entrypoints.http.app import create_app
from entrypoints.http.dependencies import authenticate
from entrypoints.settings import Settings
from tests.e2e.conftest import FAST, ApiFactory, http_scope, wait_for_status
from tests.polling import eventually


async def submit(api: httpx.AsyncClient, body: dict, **headers: str) -> httpx.Response:
    return await api.post("/v1/tasks", json=body, headers=headers)


async def test_an_echo_task_succeeds_with_its_payload_as_result(api: httpx.AsyncClient) -> None:
    response = await submit(api, {"kind": "echo", "payload": {"hello": ["world", 1]}})
    assert response.status_code == 201
    task = response.json()
    assert response.headers["location"] == f"/v1/tasks/{task['id']}"
    assert task["status"] in ("QUEUED", "RUNNING", "SUCCEEDED")
    done = await wait_for_status(api, task["id"], "SUCCEEDED")
    assert done["result"] == {"hello": ["world", 1]}
    assert done["attempts"] == 1
    assert done["started_at"] <= done["finished_at"]


async def test_a_read_may_wait_for_the_task_to_finish(api: httpx.AsyncClient) -> None:
    response = await submit(api, {"kind": "sleep", "payload": {"seconds": 0.2}})
    task_id = response.json()["id"]
    waited = await api.get(f"/v1/tasks/{task_id}", params={"wait": 30})
    assert waited.status_code == 200
    assert waited.json()["status"] == "SUCCEEDED"
    for wait in ("-1", "60.5", "nan", "inf", "soon"):
        refused = await api.get(f"/v1/tasks/{task_id}", params={"wait": wait})
        assert refused.status_code == 422, wait
        assert refused.headers["content-type"] == "application/problem+json"


async def test_a_read_waiting_for_its_task_ends_when_its_client_hangs_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nobody is left to answer: the read stops waiting (and reading the task again), and
    counts as 499, the client's doing, not an error of the server."""
    app = create_app(create_container(Settings(**FAST)))
    async with LifespanManager(app) as manager:
        api = httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://t")
        created = await submit(api, {"kind": "echo", "run_at": "2100-01-01T00:00:00Z"})
        path = f"/v1/tasks/{created.json()['id']}"
        sent: list[Any] = []
        messages = iter([{"type": "http.request", "body": b""}])

        async def receive() -> Any:
            return next(messages, {"type": "http.disconnect"})

        async def send(message: Any) -> None:
            sent.append(message)

        reading = asyncio.create_task(
            manager.app(http_scope("GET", path, b"wait=60"), receive, send)
        )
        await eventually(reading.done)
    assert [message["status"] for message in sent[:1]] == [499]
    assert [record.getMessage() for record in caplog.records if record.levelno >= ERROR] == []


async def test_a_failing_task_ends_failed_after_its_attempts(api: httpx.AsyncClient) -> None:
    response = await submit(
        api, {"kind": "fail", "payload": {"message": "boom"}, "max_attempts": 2}
    )
    failed = await wait_for_status(api, response.json()["id"], "FAILED")
    assert failed["attempts"] == 2
    assert failed["error"] == {"type": "RuntimeError", "message": "boom", "retryable": True}
    assert failed["result"] is None


async def test_a_failed_task_can_be_retried_by_hand(api: httpx.AsyncClient) -> None:
    response = await submit(api, {"kind": "fail", "max_attempts": 1})
    task_id = response.json()["id"]
    await wait_for_status(api, task_id, "FAILED")
    retried = await api.post(f"/v1/tasks/{task_id}/retry")
    assert retried.status_code == 200
    assert retried.json()["status"] == "QUEUED"
    again = await wait_for_status(api, task_id, "FAILED")
    assert again["attempts"] == 1


async def test_a_scheduled_task_can_be_cancelled_and_never_runs(api: httpx.AsyncClient) -> None:
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    task = (await submit(api, {"kind": "echo", "run_at": later})).json()
    assert task["status"] == "SCHEDULED"
    cancelled = await api.post(f"/v1/tasks/{task['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "CANCELLED"
    again = await api.post(f"/v1/tasks/{task['id']}/cancel")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert "CANCELLED" in again.json()["detail"]
    # A task scheduled just after it runs: once it succeeded, the cancelled one has had its time.
    marker = (await submit(api, {"kind": "echo", "run_at": later})).json()
    await wait_for_status(api, marker["id"], "SUCCEEDED")
    final = (await api.get(f"/v1/tasks/{task['id']}")).json()
    assert (final["status"], final["attempts"]) == ("CANCELLED", 0)


async def test_a_scheduled_task_runs_at_its_time(api: httpx.AsyncClient) -> None:
    run_at = datetime.now(UTC) + timedelta(milliseconds=300)
    task = (await submit(api, {"kind": "echo", "run_at": run_at.isoformat()})).json()
    done = await wait_for_status(api, task["id"], "SUCCEEDED")
    assert datetime.fromisoformat(done["started_at"]) >= run_at


async def test_a_running_task_is_cancelled_by_request(api: httpx.AsyncClient) -> None:
    task = (await submit(api, {"kind": "sleep", "payload": {"seconds": 60}})).json()
    await wait_for_status(api, task["id"], "RUNNING")
    requested = await api.post(f"/v1/tasks/{task['id']}/cancel")
    assert requested.json()["cancel_requested"] is True
    cancelled = await wait_for_status(api, task["id"], "CANCELLED")
    assert cancelled["result"] is None


async def test_a_finished_task_is_deleted_and_its_key_is_free_again(
    api: httpx.AsyncClient,
) -> None:
    key = {"Idempotency-Key": "report-7"}
    task = (await submit(api, {"kind": "sleep", "payload": {"seconds": 60}}, **key)).json()
    await wait_for_status(api, task["id"], "RUNNING")
    running = await api.delete(f"/v1/tasks/{task['id']}")
    assert running.status_code == 409
    assert running.headers["content-type"] == "application/problem+json"
    assert running.json()["detail"] == "cannot delete a task that is RUNNING: cancel it first"
    await api.post(f"/v1/tasks/{task['id']}/cancel")
    await wait_for_status(api, task["id"], "CANCELLED")
    deleted = await api.delete(f"/v1/tasks/{task['id']}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (await api.get(f"/v1/tasks/{task['id']}")).status_code == 404
    assert (await api.delete(f"/v1/tasks/{task['id']}")).status_code == 404
    assert (await api.get("/v1/tasks")).json()["items"] == []
    again = await submit(api, {"kind": "echo"}, **key)
    assert again.status_code == 201
    assert again.json()["id"] != task["id"]


async def test_a_task_still_waiting_at_its_expiry_fails_unrun(api_factory: ApiFactory) -> None:
    """One task at a time: the echo waits behind a sleep that outlasts its expiry."""
    api = await api_factory(worker_concurrency=1)
    blocker = (await submit(api, {"kind": "sleep", "payload": {"seconds": 1}})).json()
    await wait_for_status(api, blocker["id"], "RUNNING")
    expiry = datetime.now(UTC) + timedelta(milliseconds=300)
    late = (await submit(api, {"kind": "echo", "expires_at": expiry.isoformat()})).json()
    assert datetime.fromisoformat(late["expires_at"]) == expiry
    failed = await wait_for_status(api, late["id"], "FAILED")
    assert (failed["attempts"], failed["started_at"]) == (0, None)
    assert failed["error"]["type"] == "Expired", failed
    await wait_for_status(api, blocker["id"], "SUCCEEDED")


async def test_an_expiry_that_is_no_later_than_the_task_is_due_is_refused(
    api: httpx.AsyncClient,
) -> None:
    past = await submit(api, {"kind": "echo", "expires_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 422, past.text
    assert past.json()["detail"].endswith("must be after its submission")
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    earlier = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    before_run = await submit(api, {"kind": "echo", "run_at": later, "expires_at": earlier})
    assert before_run.status_code == 422
    assert before_run.json()["detail"].endswith("must be after its run_at")
    number = await submit(api, {"kind": "echo", "expires_at": 1700000000})
    assert number.status_code == 422
    assert "expires_at is a date and time as text" in number.text
    naive = await submit(api, {"kind": "echo", "expires_at": "2030-01-01T00:00:00"})
    assert naive.status_code == 422


async def test_an_idempotent_resubmit_returns_the_same_task(api: httpx.AsyncClient) -> None:
    body = {"kind": "echo", "payload": {"order": 42}}
    first = await submit(api, body, **{"Idempotency-Key": "order-42"})
    repeat = await submit(api, body, **{"Idempotency-Key": "order-42"})
    assert (first.status_code, repeat.status_code) == (201, 200)
    assert repeat.json()["id"] == first.json()["id"]
    assert repeat.headers["idempotent-replayed"] == "true"
    different = await submit(
        api, {**body, "payload": {"order": 43}}, **{"Idempotency-Key": "order-42"}
    )
    assert different.status_code == 409
    assert different.json()["task_id"] == first.json()["id"]
    listed = (await api.get("/v1/tasks")).json()["items"]
    assert len(listed) == 1


async def test_owners_see_only_their_own_tasks(api_factory: ApiFactory) -> None:
    api = await api_factory(api_keys="alice:key-a,bob:key-b")
    alice = {"Authorization": "Bearer key-a"}
    bob = {"Authorization": "Bearer key-b"}
    created = await api.post("/v1/tasks", json={"kind": "echo"}, headers=alice)
    task_id = created.json()["id"]
    assert (await api.get(f"/v1/tasks/{task_id}", headers=alice)).status_code == 200
    stranger = await api.get(f"/v1/tasks/{task_id}", headers=bob)
    assert stranger.status_code == 404
    assert stranger.headers["content-type"] == "application/problem+json"
    assert (await api.post(f"/v1/tasks/{task_id}/cancel", headers=bob)).status_code == 404
    await wait_for_status(api, task_id, "SUCCEEDED", headers=alice)
    assert (await api.delete(f"/v1/tasks/{task_id}", headers=bob)).status_code == 404
    assert (await api.get(f"/v1/tasks/{task_id}", headers=alice)).status_code == 200
    assert (await api.get("/v1/tasks", headers=bob)).json()["items"] == []
    missing = await api.get("/v1/tasks")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = await api.get("/v1/tasks", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


async def test_two_authorization_headers_are_unauthenticated(api_factory: ApiFactory) -> None:
    """Two keys name no one caller: neither the first nor the last is taken."""
    api = await api_factory(api_keys="alice:key-a,bob:key-b")
    for keys in (("key-b", "key-a"), ("key-a", "key-a"), ("nope", "key-a")):
        response = await api.get(
            "/v1/tasks", headers=[("Authorization", f"Bearer {key}") for key in keys]
        )
        assert response.status_code == 401, keys
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "send one API key" in response.json()["detail"]
        submitted = await api.post(
            "/v1/tasks",
            json={"kind": "echo"},
            headers=[("Authorization", f"Bearer {key}") for key in keys],
        )
        assert submitted.status_code == 401, keys


async def test_an_owner_named_twice_has_both_keys(api_factory: ApiFactory) -> None:
    """Two keys of one owner, as while a key is replaced: both are the owner's."""
    api = await api_factory(api_keys="alice:old-key,alice:new-key,bob:key-b")
    created = await api.post(
        "/v1/tasks", json={"kind": "echo"}, headers={"Authorization": "Bearer old-key"}
    )
    assert created.status_code == 201
    task_id = created.json()["id"]
    read = await api.get(f"/v1/tasks/{task_id}", headers={"Authorization": "Bearer new-key"})
    assert read.status_code == 200


async def test_an_authentication_override_decides_the_owner_on_every_route(
    api_factory: ApiFactory,
) -> None:
    """An application embedding Taskport with its own authentication (FastAPI's
    ``dependency_overrides``) has it on every route, the fast submit route included."""

    async def user_header(x_user: Annotated[str, Header()]) -> str:
        return x_user

    api = await api_factory(overrides={authenticate: user_header})
    alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
    created = await api.post("/v1/tasks", json={"kind": "echo"}, headers=alice)
    assert created.status_code == 201
    task_id = created.json()["id"]
    assert (await api.get(f"/v1/tasks/{task_id}", headers=alice)).status_code == 200
    assert (await api.get(f"/v1/tasks/{task_id}", headers=bob)).status_code == 404
    anonymous = await api.post("/v1/tasks", json={"kind": "echo"})
    assert anonymous.status_code == 422
    assert anonymous.headers["content-type"] == "application/problem+json"


async def test_pages_never_skip_or_repeat_while_tasks_arrive(api: httpx.AsyncClient) -> None:
    existing = [(await submit(api, {"kind": "echo", "payload": i})).json()["id"] for i in range(23)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/tasks", params=params)).json()
        seen.extend(item["id"] for item in page["items"])
        await submit(api, {"kind": "echo", "payload": "arrived meanwhile"})
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(existing))


async def test_pages_filter_by_status_and_kind(api: httpx.AsyncClient) -> None:
    echo = (await submit(api, {"kind": "echo"})).json()["id"]
    failing = (await submit(api, {"kind": "fail", "max_attempts": 1})).json()["id"]
    await wait_for_status(api, failing, "FAILED")
    await wait_for_status(api, echo, "SUCCEEDED")
    failed = (await api.get("/v1/tasks", params={"status": "FAILED"})).json()["items"]
    assert [item["id"] for item in failed] == [failing]
    echoes = (await api.get("/v1/tasks", params={"kind": "echo"})).json()["items"]
    assert [item["id"] for item in echoes] == [echo]


async def test_pages_filter_by_several_statuses_with_a_cursor_bound_to_them(
    api: httpx.AsyncClient,
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    failing = [(await submit(api, {"kind": "fail", "max_attempts": 1})).json()["id"]]
    scheduled = [(await submit(api, {"kind": "echo", "run_at": later})).json()["id"]]
    succeeding = [(await submit(api, {"kind": "echo"})).json()["id"]]
    failing.append((await submit(api, {"kind": "fail", "max_attempts": 1})).json()["id"])
    scheduled.append((await submit(api, {"kind": "echo", "run_at": later})).json()["id"])
    for task_id in failing:
        await wait_for_status(api, task_id, "FAILED")
    await wait_for_status(api, succeeding[0], "SUCCEEDED")
    wanted = [("status", "SCHEDULED"), ("status", "FAILED")]

    seen: list[str] = []
    page = (await api.get("/v1/tasks", params=[*wanted, ("limit", 3)])).json()
    seen.extend(item["id"] for item in page["items"])
    # The same statuses in another order, or repeated, are the same query.
    again = [("status", "FAILED"), ("status", "SCHEDULED"), ("status", "FAILED")]
    rest = await api.get("/v1/tasks", params=[*again, ("cursor", page["next_cursor"])])
    seen.extend(item["id"] for item in rest.json()["items"])
    assert seen == [scheduled[1], failing[1], scheduled[0], failing[0]]
    assert rest.json()["next_cursor"] is None

    one_status = [("status", "FAILED"), ("cursor", page["next_cursor"])]
    assert (await api.get("/v1/tasks", params=one_status)).status_code == 400
    every_status = [("status", status.value) for status in TaskStatus]
    everything = (await api.get("/v1/tasks", params=every_status)).json()["items"]
    assert len(everything) == 5


async def test_many_tasks_all_succeed(api: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *(submit(api, {"kind": "predict", "payload": {"features": {"x": i}}}) for i in range(50))
    )
    ids = [response.json()["id"] for response in responses]
    for task_id in ids:
        done = await wait_for_status(api, task_id, "SUCCEEDED")
        assert done["result"]["label"] in ("positive", "negative")
        assert done["attempts"] == 1


async def test_kinds_health_and_readiness(api: httpx.AsyncClient) -> None:
    kinds = (await api.get("/v1/kinds")).json()["items"]
    assert [kind["name"] for kind in kinds] == ["echo", "fail", "http", "predict", "sleep"]
    sleep = next(kind for kind in kinds if kind["name"] == "sleep")
    assert sleep["payload_schema"]["properties"]["seconds"]["maximum"] == 3600
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"storage": "ok", "broker": "ok"}}


async def test_stats_reflect_the_work_done(api: httpx.AsyncClient) -> None:
    done = [(await submit(api, {"kind": "echo"})).json()["id"] for _ in range(3)]
    failing = (await submit(api, {"kind": "fail", "max_attempts": 1})).json()["id"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await submit(api, {"kind": "sleep", "payload": {"seconds": 1}, "run_at": later})
    for task_id in done:
        await wait_for_status(api, task_id, "SUCCEEDED")
    await wait_for_status(api, failing, "FAILED")
    stats = (await api.get("/v1/stats")).json()
    assert stats["by_status"]["SUCCEEDED"] == 3
    assert stats["by_status"]["FAILED"] == 1
    assert stats["by_status"]["SCHEDULED"] == 1
    assert stats["by_kind"] == {"echo": 3, "fail": 1, "sleep": 1}
    assert {"status": "SUCCEEDED", "kind": "echo", "count": 3} in stats["by_status_and_kind"]
    assert list(stats["by_queue"]) == ["default"]
    assert stats["by_queue"]["default"] == stats["by_status"]
    assert stats["oldest_queued_age_seconds"] is None

    async def no_backlog() -> bool:
        return bool((await api.get("/v1/stats")).json()["outbox_backlog"] == 0)

    # Published messages are marked sent a moment after their publish (MARK_DELAY).
    await eventually(no_backlog, within=5)


async def test_readiness_tells_why_to_a_caller_with_a_key_only(api_factory: ApiFactory) -> None:
    """The reasons name hosts, ports and driver errors: not for anyone on the network."""
    api = await api_factory(
        api_keys="alice:key-a", broker_url="amqp://guest:guest@127.0.0.1:1/", embedded_worker=False
    )
    anonymous = await api.get("/readyz")
    assert anonymous.status_code == 503
    assert anonymous.json()["checks"] == {"storage": "ok", "broker": "unavailable"}
    assert anonymous.json()["detail"] == "broker: unavailable"
    told = await api.get("/readyz", headers={"Authorization": "Bearer key-a"})
    assert told.status_code == 503
    assert "Connection refused" in told.json()["checks"]["broker"], told.json()
