"""Callbacks: a finished task's outcome POSTed to its ``callback_url`` by an ``http`` task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.e2e.conftest import ApiFactory, wait_for_status
from tests.e2e.tiny_http import TinyHttpServer, json_answer
from tests.polling import eventually

CALLS_TO_LOCALHOST = {"http_allowed_hosts": ["127.0.0.1"], "http_allow_private_networks": True}


async def submit(api: httpx.AsyncClient, **task: Any) -> dict[str, Any]:
    created = await api.post("/v1/tasks", json=task)
    assert created.status_code == 201, created.json()
    body: dict[str, Any] = created.json()
    return body


async def delivered(server: TinyHttpServer, path: str, count: int = 1) -> list[dict[str, Any]]:
    def to_path() -> list[dict[str, Any]]:
        return [r for r in server.requests if r["target"].split("?")[0] == path]

    await eventually(lambda: len(to_path()) >= count)
    return to_path()


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
async def test_a_task_that_succeeds_posts_its_outcome_to_its_callback_url(
    api_factory: ApiFactory, remote: TinyHttpServer, tmp_path: Path, storage: str
) -> None:
    remote.routes["/done"] = lambda _: json_answer(204, None)
    storage_url = "memory://" if storage == "memory" else f"sqlite:///{tmp_path}/t.db"
    api = await api_factory(storage_url=storage_url, **CALLS_TO_LOCALHOST)
    url = remote.url("/done?token=s3cret")
    task = await submit(api, kind="echo", payload={"hello": "world"}, callback_url=url)
    assert task["callback_url"] == url
    finished = await wait_for_status(api, task["id"], "SUCCEEDED")

    [request] = await delivered(remote, "/done")
    assert (request["method"], request["target"]) == ("POST", "/done?token=s3cret")
    assert request["headers"]["taskport-event"] == "task.succeeded"
    assert json.loads(request["body"]) == {
        "type": "task.succeeded",
        "task": {
            "id": task["id"],
            "owner": "local",
            "kind": "echo",
            "status": "SUCCEEDED",
            "attempts": 1,
            "created_at": finished["created_at"],
            "finished_at": finished["finished_at"],
            "result": {"hello": "world"},
            "error": None,
            "schedule_id": None,
        },
    }
    # The delivery is a task of the same owner, of the http kind, seen through the API.
    deliveries = (await api.get("/v1/tasks", params={"kind": "http"})).json()["items"]
    [delivery] = deliveries
    await wait_for_status(api, delivery["id"], "SUCCEEDED")
    assert delivery["payload"]["url"] == url
    assert delivery["callback_url"] is None


async def test_a_task_that_fails_or_is_cancelled_posts_that(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/failed"] = lambda _: json_answer(200, {})
    remote.routes["/cancelled"] = lambda _: json_answer(200, {})
    api = await api_factory(**CALLS_TO_LOCALHOST)
    failing = await submit(
        api,
        kind="fail",
        payload={"message": "boom"},
        max_attempts=2,
        callback_url=remote.url("/failed"),
    )
    scheduled = await submit(
        api,
        kind="echo",
        run_at="2100-01-01T00:00:00Z",
        callback_url=remote.url("/cancelled"),
    )
    assert (await api.post(f"/v1/tasks/{scheduled['id']}/cancel")).status_code == 200
    await wait_for_status(api, failing["id"], "FAILED")

    [failed] = await delivered(remote, "/failed")
    event = json.loads(failed["body"])
    assert (event["type"], event["task"]["status"], event["task"]["attempts"]) == (
        "task.failed",
        "FAILED",
        2,
    )
    assert event["task"]["error"]["message"] == "boom"
    [cancelled] = await delivered(remote, "/cancelled")
    assert json.loads(cancelled["body"])["type"] == "task.cancelled"
    # One delivery per time a task finished: the retried attempt of the failing task
    # sent nothing.
    assert remote.hits["/failed"] == 1


async def test_a_receiver_answering_503_gets_the_outcome_again(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/flaky"] = lambda hit: json_answer(503 if hit == 1 else 200, {})
    api = await api_factory(**CALLS_TO_LOCALHOST)
    task = await submit(api, kind="echo", payload={"n": 1}, callback_url=remote.url("/flaky"))
    first, second = await delivered(remote, "/flaky", 2)
    assert first["body"] == second["body"]
    assert json.loads(second["body"])["task"]["id"] == task["id"]


async def test_a_task_retried_by_hand_posts_its_outcome_each_time_it_finishes(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/done"] = lambda _: json_answer(200, {})
    api = await api_factory(**CALLS_TO_LOCALHOST)
    task = await submit(
        api, kind="fail", payload={"message": "x"}, max_attempts=1, callback_url=remote.url("/done")
    )
    await wait_for_status(api, task["id"], "FAILED")
    await delivered(remote, "/done")
    assert (await api.post(f"/v1/tasks/{task['id']}/retry")).status_code == 200
    first, second = await delivered(remote, "/done", 2)
    assert (
        json.loads(first["body"])["task"]["finished_at"]
        != (json.loads(second["body"])["task"]["finished_at"])
    )


@pytest.mark.parametrize(
    ("callback_url", "settings", "reason"),
    [
        ("http://127.0.0.1:9/hook", {}, "calls to 127.0.0.1 are not allowed"),
        ("ftp://127.0.0.1/hook", CALLS_TO_LOCALHOST, "http:// or https://"),
        ("/relative", CALLS_TO_LOCALHOST, "http:// or https://"),
        ("http://127.0.0.1/" + "x" * 2048, CALLS_TO_LOCALHOST, "at most 2048 characters"),
        ("http://hooks..example.com/", {"http_allowed_hosts": ["*"]}, "is not a host name"),
    ],
)
async def test_a_callback_url_the_http_kind_would_not_call_is_refused_at_submit(
    api_factory: ApiFactory, callback_url: str, settings: dict[str, Any], reason: str
) -> None:
    api = await api_factory(max_body_bytes=8192, **settings)
    single = await api.post(
        "/v1/tasks", json={"kind": "echo", "payload": {}, "callback_url": callback_url}
    )
    batch = await api.post(
        "/v1/tasks/batch",
        json={"tasks": [{"kind": "echo"}, {"kind": "echo", "callback_url": callback_url}]},
    )
    for refused in (single, batch):
        assert refused.status_code == 422, refused.json()
        assert refused.headers["content-type"] == "application/problem+json"
        assert reason in json.dumps(refused.json())
        assert "Value error" not in json.dumps(refused.json())
    assert (await api.get("/v1/tasks")).json()["items"] == []


async def test_a_repeat_with_another_callback_url_is_another_request(
    api_factory: ApiFactory,
) -> None:
    api = await api_factory(**CALLS_TO_LOCALHOST)
    headers = {"Idempotency-Key": "order-1"}
    task = {"kind": "echo", "payload": {}, "callback_url": "http://127.0.0.1:9/a"}
    assert (await api.post("/v1/tasks", json=task, headers=headers)).status_code == 201
    assert (await api.post("/v1/tasks", json=task, headers=headers)).status_code == 200
    other = {**task, "callback_url": "http://127.0.0.1:9/b"}
    assert (await api.post("/v1/tasks", json=other, headers=headers)).status_code == 409


OLD_SECRET = "whsec_" + "A" * 43 + "="  # 32 bytes
NEW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 27 bytes


async def test_with_callback_secrets_a_delivery_is_signed_by_each_on_every_attempt(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/signed"] = lambda hit: json_answer(503 if hit == 1 else 200, {})
    api = await api_factory(callback_secrets=f"{OLD_SECRET}, {NEW_SECRET}", **CALLS_TO_LOCALHOST)
    task = await submit(api, kind="echo", payload={"é": 1}, callback_url=remote.url("/signed"))
    first, second = await delivered(remote, "/signed", 2)
    [delivery] = (await api.get("/v1/tasks", params={"kind": "http"})).json()["items"]
    for request in (first, second):
        headers = request["headers"]
        # The id stays the delivery's on every attempt, so a receiver drops a repeat by it.
        assert headers["webhook-id"] == delivery["id"]
        for secret in (OLD_SECRET, NEW_SECRET):
            verified = Webhook(secret).verify(request["body"], headers)
            assert verified["task"]["id"] == task["id"]
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "B" * 43 + "=").verify(first["body"], first["headers"])


async def test_a_signed_delivery_names_the_owner_of_its_task(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    """The secrets are the deployment's, shared by every owner, and any owner may name any
    callback URL: the signed body says whose task it tells of, so a receiver of alice's
    can refuse an outcome bob made up (an echo task's result is whatever bob sent)."""
    remote.routes["/alice-hooks"] = lambda _: json_answer(200, {})
    api = await api_factory(
        api_keys="alice:key-a,bob:key-b", callback_secrets=NEW_SECRET, **CALLS_TO_LOCALHOST
    )
    made_up = {"order": "A-1001", "paid": True}
    for key in ("key-a", "key-b"):
        created = await api.post(
            "/v1/tasks",
            json={"kind": "echo", "payload": made_up, "callback_url": remote.url("/alice-hooks")},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert created.status_code == 201
    requests = await delivered(remote, "/alice-hooks", 2)
    verified = [Webhook(NEW_SECRET).verify(r["body"], r["headers"]) for r in requests]
    assert sorted(outcome["task"]["owner"] for outcome in verified) == ["alice", "bob"]


async def test_without_callback_secrets_a_delivery_is_not_signed(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/plain"] = lambda _: json_answer(200, {})
    api = await api_factory(**CALLS_TO_LOCALHOST)
    await submit(api, kind="echo", payload={}, callback_url=remote.url("/plain"))
    [request] = await delivered(remote, "/plain")
    assert not [name for name in request["headers"] if name.startswith("webhook-")]


async def test_an_http_task_cannot_pass_for_a_callback_delivery_to_be_signed(
    api_factory: ApiFactory, remote: TinyHttpServer
) -> None:
    remote.routes["/own"] = lambda _: json_answer(200, {})
    api = await api_factory(callback_secrets=OLD_SECRET, **CALLS_TO_LOCALHOST)
    call = {"method": "POST", "url": remote.url("/own"), "json": {"type": "task.succeeded"}}
    refused = await api.post(
        "/v1/tasks", json={"kind": "http", "payload": {**call, "callback": True}}
    )
    assert refused.status_code == 422
    assert "only Taskport sets it" in refused.json()["detail"]
    # An http task of a client's own is sent as it is, unsigned.
    await submit(api, kind="http", payload=call)
    [request] = await delivered(remote, "/own")
    assert "webhook-signature" not in request["headers"]
