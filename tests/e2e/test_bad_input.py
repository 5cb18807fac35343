"""Every kind of bad input gets a clear problem+json 4xx, never a 500, and loses nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from logging import ERROR
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from entrypoints.container import create_container
from entrypoints.http.app import create_app
from entrypoints.http.dependencies import authenticate
from entrypoints.settings import Settings
from tests.e2e.conftest import FAST, ApiFactory, http_scope

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"] == f"/problems/{slug}"
    assert problem["title"] and problem["detail"]
    return problem


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def post_raw(
    api: httpx.AsyncClient,
    content: Any,
    content_type: str = "application/json",
    path: str = "/v1/tasks",
) -> httpx.Response:
    return await api.post(path, content=content, headers={"Content-Type": content_type})


@pytest.mark.parametrize(
    ("content", "status", "slug"),
    [
        (b'{"kind": "echo",', 400, "malformed-json"),
        (b"\xff\xfe", 400, "malformed-json"),
        (b"[1, 2]", 422, "invalid-request"),
        (b'{"payload": {}}', 422, "invalid-request"),
        (b'{"kind": "echo", "unexpected": 1}', 422, "invalid-request"),
        (b'{"kind": "echo", "max_attempts": 0}', 422, "invalid-request"),
        (b'{"kind": "echo", "max_attempts": 101}', 422, "invalid-request"),
        (b'{"kind": "echo", "timeout_seconds": -1}', 422, "invalid-request"),
        (b'{"kind": "echo", "max_attempts": "3"}', 422, "invalid-request"),
        (b'{"kind": "echo", "max_attempts": true}', 422, "invalid-request"),
        (b'{"kind": "echo", "max_attempts": 3.5}', 422, "invalid-request"),
        (b'{"kind": "echo", "max_attempts": 1e300}', 422, "invalid-request"),
        (b'{"kind": "echo", "timeout_seconds": "5"}', 422, "invalid-request"),
        (b'{"kind": "echo", "run_at": 1700000000}', 422, "invalid-request"),
        (b'{"kind": "echo", "run_at": 0}', 422, "invalid-request"),
        (b'{"kind": "echo", "run_at": "2030-01-01T00:00:00"}', 422, "invalid-request"),
        (b'{"kind": "echo", "run_at": "tomorrow"}', 422, "invalid-request"),
        (b'{"kind": "echo", "run_at": "0001-01-01T00:00:00+14:00"}', 422, "invalid-task"),
        (b'{"kind": "echo", "run_at": "9999-12-31T23:59:59-12:00"}', 422, "invalid-task"),
        (b'{"kind": "Not A Kind"}', 422, "unknown-kind"),
        (b'{"kind": "sleep", "payload": {"seconds": 4000}}', 422, "invalid-payload"),
        (b'{"kind": "sleep", "payload": "ten"}', 422, "invalid-payload"),
        # A builtin kind's payload is JSON of the types its schema says, not converted.
        (b'{"kind": "sleep", "payload": {"seconds": false}}', 422, "invalid-payload"),
        (b'{"kind": "sleep", "payload": {"seconds": "1"}}', 422, "invalid-payload"),
        (b'{"kind": "fail", "payload": {"permanent": 1}}', 422, "invalid-payload"),
        (b'{"kind": "fail", "payload": {"message": 42}}', 422, "invalid-payload"),
        (b'{"kind": "predict", "payload": {"features": {"a": true}}}', 422, "invalid-payload"),
        (b'{"kind": "echo", "payload": NaN}', 422, "invalid-payload"),
        (b'{"kind": "echo", "payload": {"scores": [1, -Infinity]}}', 422, "invalid-payload"),
        (b'{"kind": "echo", "payload": {"name": "a\\u0000b"}}', 422, "invalid-payload"),
        (b'{"kind": "echo", "payload": {"k\\u0000": 1}}', 422, "invalid-payload"),
        (b'{"kind": "echo", "payload": "\\ud800"}', 400, "malformed-json"),
        (b'{"kind": "echo", "payload": %b}' % nested(101), 422, "invalid-payload"),
        (b'{"kind": "echo", "payload": %b}' % nested(2000), 400, "malformed-json"),
    ],
)
async def test_a_bad_submit_is_a_problem(
    api: httpx.AsyncClient, content: bytes, status: int, slug: str
) -> None:
    assert_problem(await post_raw(api, content), status, slug)
    assert (await api.get("/v1/tasks")).json()["items"] == []


@pytest.mark.parametrize("spelling", [b"3.0", b"3e0", b"0.3e1"])
async def test_a_whole_number_of_attempts_may_be_spelled_as_json_schema_allows(
    api: httpx.AsyncClient, spelling: bytes
) -> None:
    """The document says ``"type": "integer"``, which JSON Schema counts 3.0 as: a client
    whose JSON library writes floats is not refused for it."""
    one = await post_raw(api, b'{"kind": "echo", "max_attempts": %b}' % spelling)
    batch = await post_raw(
        api, b'{"tasks": [{"kind": "echo", "max_attempts": %b}]}' % spelling, path="/v1/tasks/batch"
    )
    schedule = await post_raw(
        api,
        b'{"kind": "echo", "cron": "0 3 * * *", "max_attempts": %b}' % spelling,
        path="/v1/schedules",
    )
    assert (one.status_code, batch.status_code, schedule.status_code) == (201, 201, 201)
    assert one.json()["max_attempts"] == 3
    assert batch.json()["items"][0]["max_attempts"] == 3
    assert schedule.json()["max_attempts"] == 3


@pytest.mark.parametrize(
    ("content", "status", "slug"),
    [
        (b'{"kind": "echo",', 400, "malformed-json"),
        (b"\xff\xfe", 400, "malformed-json"),
        (b"\xef\xbb\xbf{}", 400, "malformed-json"),
        (b'{"kind": "echo", "payload": "\\ud800"}', 400, "malformed-json"),
        (nested(300), 400, "malformed-json"),
        (b"", 422, "invalid-request"),
        (b"null", 422, "invalid-request"),
        (b"[1, 2]", 422, "invalid-request"),
        (b'"echo"', 422, "invalid-request"),
        (b"42", 422, "invalid-request"),
    ],
)
@pytest.mark.parametrize("overridden", [False, True], ids=["own-reading", "fastapi-reading"])
async def test_a_bad_body_is_the_same_problem_for_one_task_and_a_batch(
    api_factory: ApiFactory, content: bytes, status: int, slug: str, overridden: bool
) -> None:
    """The same reading of JSON on both routes, and on the submit route whichever way it
    reads its arguments (its own, or FastAPI's when a dependency is overridden)."""

    async def local() -> str:
        return "local"

    api = await api_factory({authenticate: local} if overridden else None)
    one = assert_problem(await post_raw(api, content), status, slug)
    batch = assert_problem(await post_raw(api, content, path="/v1/tasks/batch"), status, slug)
    assert one.pop("instance") == "/v1/tasks"
    assert batch.pop("instance") == "/v1/tasks/batch"
    assert one == batch


async def test_a_payload_postgresql_cannot_keep_is_refused_alone(
    api_factory: ApiFactory, empty_postgres_url: str
) -> None:
    """NaN and the NUL character reach the database on no storage: on PostgreSQL, where
    they would fail the statement that stores every task submitted in the same moment,
    each bad submit is a 422 naming the place, and the good ones beside it are stored."""
    api = await api_factory(storage_url=empty_postgres_url, migrate_on_start=True)
    bad = [b'{"kind": "echo", "payload": {"note": "a\\u0000b"}}'] * 5 + [
        b'{"kind": "echo", "payload": [NaN]}'
    ] * 5
    good = [b'{"kind": "echo", "payload": {"n": 1}}'] * 10
    answers = await asyncio.gather(*(post_raw(api, body) for body in bad + good))
    details = {assert_problem(answer, 422, "invalid-payload")["detail"] for answer in answers[:10]}
    assert details == {
        "invalid payload for kind 'echo': payload.note: a string holds the NUL character (\\u0000)",
        "invalid payload for kind 'echo': payload[0]: nan is not a JSON number",
    }
    assert [answer.status_code for answer in answers[10:]] == [201] * 10
    # In a batch, each such item is named, and none of the batch is stored.
    batch = await api.post(
        "/v1/tasks/batch",
        content=b'{"tasks": [{"kind": "echo"}, {"kind": "echo", "payload": {"x\\u0000": 1}},'
        b' {"kind": "echo", "payload": [NaN]}]}',
        headers={"Content-Type": "application/json"},
    )
    problem = assert_problem(batch, 422, "invalid-batch")
    assert [error["index"] for error in problem["errors"]] == [1, 2]
    assert problem["errors"][1]["message"].endswith("payload[0]: nan is not a JSON number")
    stored = (await api.get("/v1/tasks", params={"limit": 100})).json()["items"]
    assert sorted(task["id"] for task in stored) == sorted(a.json()["id"] for a in answers[10:])


@pytest.mark.parametrize(
    ("depth", "status", "slug"),
    [(101, 422, "invalid-batch"), (190, 422, "invalid-batch"), (900, 400, "malformed-json")],
)
async def test_a_batch_nested_too_deep_is_a_problem(
    api: httpx.AsyncClient, depth: int, status: int, slug: str
) -> None:
    """Stored, a task nested deeper than the API can serialise would make every page that
    shows it fail: it is refused instead, as an invalid item past 100 levels, as malformed
    JSON past what the parser reads."""
    body = b'{"tasks": [{"kind": "echo"}, {"kind": "echo", "payload": %b}]}' % nested(depth)
    response = await api.post(
        "/v1/tasks/batch", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, status, slug)
    assert (await api.get("/v1/tasks")).json()["items"] == []


async def test_an_unknown_kind_lists_the_known_ones(api: httpx.AsyncClient) -> None:
    problem = assert_problem(await post_raw(api, b'{"kind": "nope"}'), 422, "unknown-kind")
    assert problem["known_kinds"] == ["echo", "fail", "http", "predict", "sleep"]


async def test_a_body_that_is_not_json_is_unsupported(api: httpx.AsyncClient) -> None:
    response = await post_raw(api, b"kind=echo", "application/x-www-form-urlencoded")
    assert_problem(response, 415, "unsupported-media-type")
    assert_problem(
        await post_raw(api, b'{"kind": "echo"}', "text/plain"), 415, "unsupported-media-type"
    )


async def test_a_body_over_the_limit_is_refused_by_its_length(api: httpx.AsyncClient) -> None:
    big = b'{"kind": "echo", "payload": "' + b"x" * 5000 + b'"}'
    problem = assert_problem(await post_raw(api, big), 413, "body-too-large")
    assert problem["max_body_bytes"] == 4096


async def test_a_chunked_body_over_the_limit_is_cut_off(api: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"kind": "echo", "payload": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = await post_raw(api, chunks())
    assert_problem(response, 413, "body-too-large")
    assert (await api.get("/v1/tasks")).json()["items"] == []


async def test_a_chunked_body_within_the_limit_is_accepted(api: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"kind": "echo", '
        yield b'"payload": {"small": true}}'

    assert (await post_raw(api, chunks())).status_code == 201


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/tasks/batch"])
async def test_a_client_gone_before_the_end_of_its_body_is_no_server_error(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The client hangs up in the middle of its body: nobody is answered, and it is not
    logged or counted as an error of the server."""
    sent: list[Any] = []
    messages = iter([{"type": "http.request", "body": b'{"kind": "ec', "more_body": True}])

    async def receive() -> Any:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: Any) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
    scope = http_scope("POST", path, headers=headers)
    app = create_app(create_container(Settings(**FAST)))
    async with LifespanManager(app) as manager:
        await manager.app(scope, receive, send)
    assert [message["status"] for message in sent[:1]] == [499]
    assert [record.getMessage() for record in caplog.records if record.levelno >= ERROR] == []


@pytest.mark.parametrize(
    ("params", "status", "slug"),
    [
        ({"limit": 0}, 422, "invalid-request"),
        ({"limit": 1001}, 422, "invalid-request"),
        ({"limit": "many"}, 422, "invalid-request"),
        ({"status": "DONE"}, 422, "invalid-request"),
        ({"status": ["QUEUED", "DONE"]}, 422, "invalid-request"),
        ({"status": ["QUEUED"] * 7}, 422, "invalid-request"),
        ({"kind": "a\x00b"}, 422, "invalid-request"),
        ({"kind": "Not A Kind"}, 422, "invalid-request"),
        ({"cursor": "forged"}, 400, "invalid-cursor"),
    ],
)
async def test_a_bad_list_query_is_a_problem(
    api: httpx.AsyncClient, params: dict[str, Any], status: int, slug: str
) -> None:
    assert_problem(await api.get("/v1/tasks", params=params), status, slug)


async def test_a_cursor_is_bound_to_its_filters(api: httpx.AsyncClient) -> None:
    for _ in range(3):
        await post_raw(api, b'{"kind": "echo"}')
    page = (await api.get("/v1/tasks", params={"limit": 1, "kind": "echo"})).json()
    response = await api.get("/v1/tasks", params={"limit": 1, "cursor": page["next_cursor"]})
    assert_problem(response, 400, "invalid-cursor")


@pytest.mark.parametrize("path", ["/v1/tasks/not-a-uuid", "/v1/tasks/123"])
async def test_a_bad_task_id_is_a_problem(api: httpx.AsyncClient, path: str) -> None:
    assert_problem(await api.get(path), 422, "invalid-request")
    assert_problem(await api.post(f"{path}/cancel"), 422, "invalid-request")


async def test_an_unknown_task_is_not_found(api: httpx.AsyncClient) -> None:
    missing = "/v1/tasks/01900000-0000-7000-8000-000000000000"
    assert_problem(await api.get(missing), 404, "task-not-found")
    assert_problem(await api.post(f"{missing}/retry"), 404, "task-not-found")


async def test_retrying_a_task_that_has_not_failed_is_a_conflict(api: httpx.AsyncClient) -> None:
    task = (await post_raw(api, b'{"kind": "sleep", "payload": {"seconds": 30}}')).json()
    assert_problem(await api.post(f"/v1/tasks/{task['id']}/retry"), 409, "illegal-transition")


@pytest.mark.parametrize("key", [b"x" * 256, b"has space", "ünïcode".encode(), b"key\n"])
async def test_a_bad_idempotency_key_is_a_problem(api: httpx.AsyncClient, key: bytes) -> None:
    response = await api.post(
        "/v1/tasks",
        content=b'{"kind": "echo"}',
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
    )
    assert_problem(response, 400, "invalid-idempotency-key")


@pytest.mark.parametrize("key", ["x" * 256, "has space", "ünïcode", "key\n", ""])
async def test_a_bad_idempotency_key_of_a_batch_item_names_the_rule(
    api: httpx.AsyncClient, key: str
) -> None:
    response = await api.post(
        "/v1/tasks/batch",
        json={"tasks": [{"kind": "echo"}, {"kind": "echo", "idempotency_key": key}]},
    )
    [error] = assert_problem(response, 422, "invalid-request")["errors"]
    assert error["location"] == ["body", "tasks", "1", "idempotency_key"]
    assert error["message"].endswith("an idempotency key is 1-255 visible ASCII characters")
    assert (await api.get("/v1/tasks")).json()["items"] == []


async def test_two_idempotency_keys_in_one_submit_are_a_problem(
    api_factory: ApiFactory,
) -> None:
    """Two Idempotency-Key lines are one field, ``first, second`` (RFC 9110 §5.3): not a
    key, and not the first line alone."""
    api = await api_factory()
    response = await api.post(
        "/v1/tasks",
        json={"kind": "echo"},
        headers=[("Idempotency-Key", "first"), ("Idempotency-Key", "second")],
    )
    assert (
        "one Idempotency-Key" in assert_problem(response, 400, "invalid-idempotency-key")["detail"]
    )
    assert (await api.get("/v1/tasks")).json()["items"] == []


async def test_a_schedule_s_idempotency_key_is_refused_on_both_submit_routes(
    api: httpx.AsyncClient,
) -> None:
    key = f"schedule:{uuid.uuid4()}:20260105T120500Z"
    single = await api.post("/v1/tasks", json={"kind": "echo"}, headers={"Idempotency-Key": key})
    assert (
        "kept for the tasks of schedules" in assert_problem(single, 422, "invalid-task")["detail"]
    )
    batch = await api.post(
        "/v1/tasks/batch", json={"tasks": [{"kind": "echo", "idempotency_key": key}]}
    )
    assert_problem(batch, 422, "invalid-batch")
    assert (await api.get("/v1/tasks")).json()["items"] == []


async def test_unknown_routes_and_methods_are_problems(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get("/v2/nothing"), 404, "not-found")
    assert_problem(await api.delete("/v1/tasks"), 405, "method-not-allowed")
