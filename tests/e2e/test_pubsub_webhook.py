"""The Pub/Sub push webhook: hand-made push envelopes POSTed to the API, as Pub/Sub would."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from dependency_injector import providers
from google.cloud import pubsub_v1

from adapters.brokers.pubsub import PubSubOptions
from adapters.brokers.pubsub.publisher import REASON_ATTRIBUTE
from application import correlation
from application.errors import StorageUnavailable
from application.use_cases.run_task import Outcome, RunResult
from entrypoints.container import create_container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.e2e.conftest import FAST, wait_for_status
from tests.factories import new_id
from tests.oidc import AUDIENCE, SERVICE_ACCOUNT, CertificatesRequest, TestSigner
from tests.polling import eventually
from tests.pubsub import new_project, pull_all

pytestmark = pytest.mark.e2e

Start = Callable[..., Any]


def envelope(data: bytes | str, message_id: str = "1", **extra: Any) -> dict[str, Any]:
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    return {
        "message": {
            "data": encoded,
            "attributes": {"taskport_message_id": "x"},
            "messageId": message_id,
            "publishTime": "2026-01-01T12:00:00.123Z",
        },
        "subscription": "projects/taskport-local/subscriptions/taskport-tasks-push",
        **extra,
    }


def run_task_envelope(task_id: str, message_id: str = "1") -> dict[str, Any]:
    return envelope(json.dumps({"task_id": task_id}).encode(), message_id, deliveryAttempt=1)


@pytest.fixture(scope="module")
def signer() -> TestSigner:
    return TestSigner()


class RunTaskStub:
    """Stands in for the run-task use case: ``answer`` runs every task, and nothing is left
    in progress when the application stops."""

    in_progress = 0

    def __init__(self, answer: Callable[[Any], Awaitable[RunResult]]) -> None:
        self._answer = answer

    async def __call__(self, command: Any) -> RunResult:
        return await self._answer(command)

    async def drain(self) -> None:
        return None


@pytest.fixture
async def start(pubsub_emulator: Any, signer: TestSigner) -> AsyncIterator[Start]:
    """Starts the API with the Pub/Sub broker and no worker: tasks run only when pushed.
    ``run_task`` replaces the use case; the certificates come from the test signer."""
    managers: list[LifespanManager] = []

    async def launch(
        run_task: Any = None, certificates: Any = None, **settings: Any
    ) -> httpx.AsyncClient:
        values = {
            **FAST,
            "broker_url": f"pubsub://{new_project()}",
            "pubsub_create": True,
            "embedded_worker": False,
            **settings,
        }
        container = create_container(Settings(**values))
        container.push_certificates_request.override(
            providers.Object(certificates or CertificatesRequest(signer))
        )
        if run_task is not None:
            container.run_task.override(providers.Object(RunTaskStub(run_task)))
        manager = LifespanManager(create_app(container))
        await manager.__aenter__()
        managers.append(manager)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://taskport"
        )

    yield launch
    for manager in reversed(managers):
        await manager.__aexit__(None, None, None)


async def submit(client: httpx.AsyncClient, payload: Any = None) -> str:
    response = await client.post("/v1/tasks", json={"kind": "echo", "payload": payload or {}})
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


@pytest.mark.parametrize("path", ["/webhook/pubsub", "/webhook"])
async def test_a_pushed_message_runs_its_task_and_answers_204(start: Start, path: str) -> None:
    client = await start()
    task_id = await submit(client, {"hi": 1})
    response = await client.post(path, json=run_task_envelope(task_id))
    assert response.status_code == 204
    task = (await client.get(f"/v1/tasks/{task_id}")).json()
    assert task["status"] == "SUCCEEDED"
    assert task["result"] == {"hi": 1}


async def test_a_push_from_the_subscription_of_a_named_queue_runs_its_task(start: Start) -> None:
    """The webhook serves every queue's push subscription: it does not check which one."""
    client = await start()
    task_id = await submit(client, {"queue": "images"})
    pushed = {
        **run_task_envelope(task_id),
        "subscription": "projects/taskport-local/subscriptions/taskport-tasks-worker-images",
    }
    response = await client.post("/webhook/pubsub", json=pushed)
    assert response.status_code == 204
    assert (await client.get(f"/v1/tasks/{task_id}")).json()["status"] == "SUCCEEDED"


async def test_a_push_runs_under_the_request_and_the_task_it_carries(start: Start) -> None:
    """Log lines of a pushed run name the request that submitted the task, as a worker's do."""
    seen: list[tuple[str | None, str | None]] = []

    async def run(command: Any) -> RunResult:
        seen.append((correlation.request_id.get(), correlation.task_id.get()))
        return RunResult(Outcome.RAN)

    client = await start(run_task=run)
    task_id = str(new_id())
    message = json.dumps({"task_id": task_id, "request_id": "req-from-submit"}).encode()
    pushed = await client.post("/webhook/pubsub", json=envelope(message, deliveryAttempt=1))
    assert pushed.status_code == 204
    assert pushed.headers["x-request-id"] != "req-from-submit"  # the push's own request
    assert seen == [("req-from-submit", task_id)]


async def test_the_heartbeat_counts_the_pushes_running(start: Start) -> None:
    """The server running pushes is a worker: ``running`` in GET /v1/workers is the number
    of pushes it is running at its last heartbeat."""
    client = await start(heartbeat_seconds=0.05)
    submitted = await client.post(
        "/v1/tasks", json={"kind": "sleep", "payload": {"seconds": 60}, "max_attempts": 1}
    )
    task_id = submitted.json()["id"]
    pushed = asyncio.create_task(client.post("/webhook/pubsub", json=run_task_envelope(task_id)))
    try:
        await wait_for_status(client, task_id, "RUNNING")

        async def counted(running: int) -> bool:
            (worker,) = (await client.get("/v1/workers")).json()["items"]
            return bool(worker["running"] == running)

        await eventually(lambda: counted(1))
    finally:
        pushed.cancel()
        await asyncio.gather(pushed, return_exceptions=True)
    await eventually(lambda: counted(0))


async def test_a_duplicate_push_never_produces_a_second_result(start: Start) -> None:
    client = await start()
    task_id = await submit(client, {"once": True})
    first = await client.post("/webhook/pubsub", json=run_task_envelope(task_id, "42"))
    after_first = (await client.get(f"/v1/tasks/{task_id}")).json()
    again = await client.post("/webhook/pubsub", json=run_task_envelope(task_id, "42"))
    after_again = (await client.get(f"/v1/tasks/{task_id}")).json()
    assert (first.status_code, again.status_code) == (204, 204)
    assert after_first["status"] == "SUCCEEDED"
    assert after_again == after_first
    assert after_again["attempts"] == 1


async def test_a_duplicate_pushed_while_the_task_runs_is_sent_back_for_later(
    start: Start,
) -> None:
    client = await start()
    response = await client.post("/v1/tasks", json={"kind": "sleep", "payload": {"seconds": 0.5}})
    task_id = response.json()["id"]
    first, second = await asyncio.gather(
        client.post("/webhook/pubsub", json=run_task_envelope(task_id, "7")),
        client.post("/webhook/pubsub", json=run_task_envelope(task_id, "7")),
    )
    assert sorted([first.status_code, second.status_code]) == [204, 503]
    busy = first if first.status_code == 503 else second
    assert int(busy.headers["Retry-After"]) >= 1
    redelivered = await client.post("/webhook/pubsub", json=run_task_envelope(task_id, "7"))
    assert redelivered.status_code == 204
    task = (await client.get(f"/v1/tasks/{task_id}")).json()
    assert (task["status"], task["attempts"], task["result"]) == ("SUCCEEDED", 1, {"slept": 0.5})


UNKNOWN_TASK = str(new_id())


async def dead_lettered(broker_url: str) -> list[pubsub_v1.types.PubsubMessage]:
    """The messages on the dead-letter topic, as soon as there is one."""
    path = PubSubOptions.from_url(broker_url).dead_letter_subscription_path
    received: list[pubsub_v1.types.PubsubMessage] = []

    async def arrived() -> bool:
        pulled = await asyncio.to_thread(pull_all, path)
        received.extend(message.message for message in pulled)
        return bool(received)

    await eventually(arrived)
    return received


@pytest.mark.parametrize(
    ("name", "body", "data", "reason"),
    [
        ("bad base64", envelope("not base64!!"), b"not base64!!", "message data is not base64"),
        (
            "not json inside",
            envelope(b"\x00\xff garbage"),
            b"\x00\xff garbage",
            "not a run-task message",
        ),
        (
            "not a run-task message",
            envelope(b'{"hello": "world"}'),
            b'{"hello": "world"}',
            "not a run-task message",
        ),
        (
            "task id not a uuid",
            envelope(b'{"task_id": "nope"}'),
            b'{"task_id": "nope"}',
            "not a run-task message",
        ),
        (
            "nested too deep",
            envelope(b"[" * 1200 + b"]" * 1200),
            b"[" * 1200 + b"]" * 1200,
            "not a run-task message",
        ),
        (
            "unknown task",
            run_task_envelope(UNKNOWN_TASK),
            json.dumps({"task_id": UNKNOWN_TASK}).encode(),
            f"unknown task {UNKNOWN_TASK}",
        ),
        (
            "delivered too often",
            {**run_task_envelope(UNKNOWN_TASK), "deliveryAttempt": 101},
            json.dumps({"task_id": UNKNOWN_TASK}).encode(),
            "delivered 101 times",
        ),
    ],
)
async def test_a_poison_message_is_acked_once_its_copy_is_on_the_dead_letter_topic(
    start: Start,
    caplog: pytest.LogCaptureFixture,
    name: str,
    body: dict[str, Any],
    data: bytes,
    reason: str,
) -> None:
    broker_url = f"pubsub://{new_project()}"
    client = await start(broker_url=broker_url)
    with caplog.at_level(logging.ERROR, logger="taskport.webhook"):
        response = await client.post("/webhook/pubsub", json=body)
    assert response.status_code == 204, name
    assert any("dead-lettering pushed message" in record.message for record in caplog.records)
    [copy] = await dead_lettered(broker_url)
    assert copy.data == data
    attributes = dict(copy.attributes)
    assert attributes.pop(REASON_ATTRIBUTE).startswith(reason)
    assert attributes == {
        "taskport_message_id": "x",  # the original attributes are kept
        "taskport_source_message_id": body["message"]["messageId"],
        "taskport_source_subscription": body["subscription"],
        **(
            {"taskport_delivery_attempt": str(body["deliveryAttempt"])}
            if "deliveryAttempt" in body
            else {}
        ),
    }


async def test_a_poison_message_is_sent_back_while_the_dead_letter_topic_is_missing(
    start: Start,
) -> None:
    broker_url = f"pubsub://{new_project()}"
    options = PubSubOptions.from_url(broker_url)
    client = await start(broker_url=broker_url)
    assert (await client.get("/readyz")).status_code == 200  # provisioned
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    dead_letter_subscription = options.dead_letter_subscription_path
    await asyncio.to_thread(subscriber.delete_subscription, subscription=dead_letter_subscription)
    await asyncio.to_thread(publisher.delete_topic, topic=options.dead_letter_topic_path)

    refused = await client.post("/webhook/pubsub", json=envelope(b"poison", "9"))
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/dead-letter-unavailable"
    assert int(refused.headers["Retry-After"]) >= 1

    await asyncio.to_thread(publisher.create_topic, name=options.dead_letter_topic_path)
    await asyncio.to_thread(
        subscriber.create_subscription,
        name=dead_letter_subscription,
        topic=options.dead_letter_topic_path,
    )
    subscriber.close()
    pushed_again = await client.post("/webhook/pubsub", json=envelope(b"poison", "9"))
    assert pushed_again.status_code == 204
    [copy] = await dead_lettered(broker_url)
    assert (copy.data, copy.attributes["taskport_source_message_id"]) == (b"poison", "9")


async def test_the_webhook_exists_only_with_the_pubsub_broker(start: Start) -> None:
    client = await start(broker_url="memory://", embedded_worker=True)
    response = await client.post("/webhook/pubsub", json=envelope(b"poison"))
    assert response.status_code == 404


async def test_the_webhook_declares_what_it_answers(start: Start) -> None:
    client = await start()
    document = (await client.get("/openapi.json")).json()
    push = document["paths"]["/webhook/pubsub"]["post"]
    assert set(push["responses"]) == {"204", "400", "401", "403", "413", "415", "503"}
    for status in ("400", "401", "403", "413", "415", "503"):
        assert list(push["responses"][status]["content"]) == ["application/problem+json"]
    assert "/webhook" not in document["paths"]


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("no message", {"subscription": "projects/p/subscriptions/s"}),
        ("no messageId", {"message": {"data": ""}, "subscription": "projects/p/subscriptions/s"}),
        ("no subscription", {"message": {"data": "", "messageId": "1"}}),
        ("message not an object", {"message": "hello", "subscription": "s"}),
        (
            "attributes not strings",
            {**envelope(b"{}"), "message": {"messageId": "1", "attributes": {"a": [1]}}},
        ),
        ("a list", [1, 2, 3]),
    ],
)
async def test_a_malformed_envelope_gets_400_problem(start: Start, name: str, body: Any) -> None:
    client = await start()
    response = await client.post("/webhook/pubsub", json=body)
    assert response.status_code == 400, name
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/malformed-push"


async def test_a_body_that_is_not_json_gets_400(start: Start) -> None:
    client = await start()
    response = await client.post(
        "/webhook/pubsub", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/malformed-json"


async def test_an_oversized_push_gets_413(start: Start) -> None:
    client = await start()
    body = envelope(base64.b64encode(b"x" * 8000).decode())
    response = await client.post("/webhook/pubsub", json=body)
    assert response.status_code == 413


async def test_storage_unavailable_answers_503_so_pubsub_pushes_again(start: Start) -> None:
    async def storage_down(command: Any) -> RunResult:
        raise StorageUnavailable("connection refused", retry_after_seconds=3)

    client = await start(run_task=storage_down)
    response = await client.post("/webhook/pubsub", json=run_task_envelope(str(new_id())))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"


async def test_a_task_held_by_another_attempt_answers_503_with_its_lease(start: Start) -> None:
    async def busy(command: Any) -> RunResult:
        return RunResult(Outcome.BUSY, None, timedelta(seconds=7.2))

    client = await start(run_task=busy)
    response = await client.post("/webhook/pubsub", json=run_task_envelope(str(new_id())))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "8"


OIDC = {
    "environment": "production",
    "secret_key": "s3cret-for-tests",
    "api_keys": "local:key-1",
    "push_auth": "oidc",
    "push_audience": AUDIENCE,
    "push_service_account": SERVICE_ACCOUNT,
}
API_KEY = {"Authorization": "Bearer key-1"}


async def test_a_push_with_a_valid_token_runs_its_task(start: Start, signer: TestSigner) -> None:
    client = await start(**OIDC)
    submitted = await client.post("/v1/tasks", json={"kind": "echo", "payload": 1}, headers=API_KEY)
    task_id = submitted.json()["id"]
    response = await client.post(
        "/webhook/pubsub",
        json=run_task_envelope(task_id),
        headers={"Authorization": f"Bearer {signer.token()}"},
    )
    assert response.status_code == 204
    task = await wait_for_status(client, task_id, "SUCCEEDED", headers=API_KEY)
    assert task["result"] == 1


async def test_a_push_without_a_token_gets_401(start: Start) -> None:
    client = await start(**OIDC)
    response = await client.post("/webhook/pubsub", json=run_task_envelope(str(new_id())))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("name", "claims"),
    [
        ("expired", {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}),
        ("wrong audience", {"aud": "https://elsewhere.example.com/"}),
        ("wrong issuer", {"iss": "https://evil.example.com"}),
        ("another service account", {"email": "intruder@example.iam.gserviceaccount.com"}),
        ("email not verified", {"email_verified": False}),
    ],
)
async def test_a_push_with_a_wrong_token_gets_403(
    start: Start, signer: TestSigner, name: str, claims: dict[str, Any]
) -> None:
    client = await start(**OIDC)
    response = await client.post(
        "/webhook/pubsub",
        json=run_task_envelope(str(new_id())),
        headers={"Authorization": f"Bearer {signer.token(**claims)}"},
    )
    assert response.status_code == 403, name


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
async def test_a_push_with_an_unsigned_or_foreign_token_gets_403(start: Start, token: str) -> None:
    client = await start(**OIDC)
    foreign = TestSigner().token()  # right claims, another key
    for bearer in (token, foreign):
        response = await client.post(
            "/webhook/pubsub",
            json=run_task_envelope(str(new_id())),
            headers={"Authorization": f"Bearer {bearer}"},
        )
        assert response.status_code == 403, bearer[:20]


def test_push_without_authentication_is_refused_outside_local() -> None:
    with pytest.raises(ValueError, match="TASKPORT_PUSH_AUTH=none is refused"):
        Settings(**{**OIDC, "push_auth": "none"})
    assert Settings(**{**OIDC, "push_auth": None}).push_auth_mode == "oidc"
    assert Settings().push_auth_mode == "none"


async def test_a_push_answers_503_while_googles_certificates_cannot_be_fetched(
    start: Start, signer: TestSigner
) -> None:
    unreachable = CertificatesRequest(signer)
    unreachable.status = 500
    client = await start(certificates=unreachable, **OIDC)
    response = await client.post(
        "/webhook/pubsub",
        json=run_task_envelope(str(new_id())),
        headers={"Authorization": f"Bearer {signer.token()}"},
    )
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    # A token that is not one is refused without Google's certificates.
    for garbage in ("abc", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30"):
        refused = await client.post(
            "/webhook/pubsub",
            json=run_task_envelope(str(new_id())),
            headers={"Authorization": f"Bearer {garbage}"},
        )
        assert refused.status_code == 403, (garbage, refused.json())
