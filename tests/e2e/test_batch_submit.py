"""POST /v1/tasks/batch: many tasks in one request, stored all together or not at all."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from entrypoints.settings import Settings
from tests.e2e.conftest import ApiFactory, wait_for_status
from tests.e2e.test_bad_input import assert_problem

DEFAULT_MAX_BODY_BYTES = Settings.model_fields["max_body_bytes"].default


def batch(*items: dict[str, Any]) -> dict[str, Any]:
    return {"tasks": list(items)}


async def stored_ids(api: httpx.AsyncClient) -> list[str]:
    return [task["id"] for task in (await api.get("/v1/tasks?limit=1000")).json()["items"]]


async def test_a_batch_is_created_in_request_order_and_run(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/tasks/batch",
        json=batch(*({"kind": "echo", "payload": {"n": n}} for n in range(3))),
    )
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [item["payload"] for item in items] == [{"n": 0}, {"n": 1}, {"n": 2}]
    for item in items:
        done = await wait_for_status(api, item["id"], "SUCCEEDED")
        assert done["result"] == item["payload"]


async def test_a_thousand_small_tasks_fit_the_default_body_limit(
    api_factory: ApiFactory,
) -> None:
    api = await api_factory(max_body_bytes=DEFAULT_MAX_BODY_BYTES)
    body = batch(
        *({"kind": "echo", "payload": {"n": n}, "idempotency_key": f"k{n}"} for n in range(1000))
    )
    response = await api.post("/v1/tasks/batch", json=body)
    assert response.status_code == 201, response.text
    assert len(response.json()["items"]) == 1000
    assert len(await stored_ids(api)) == 1000


async def test_repeated_items_return_their_tasks_and_new_ones_are_created(
    api: httpx.AsyncClient,
) -> None:
    first = await api.post(
        "/v1/tasks", json={"kind": "echo", "payload": {"a": 1}}, headers={"Idempotency-Key": "k1"}
    )
    response = await api.post(
        "/v1/tasks/batch",
        json=batch(
            {"kind": "echo", "payload": {"a": 1}, "idempotency_key": "k1"},
            {"kind": "echo", "payload": {"b": 2}, "idempotency_key": "k2"},
        ),
    )
    assert response.status_code == 201, response.text
    replayed, created = response.json()["items"]
    assert replayed["id"] == first.json()["id"]
    again = await api.post(
        "/v1/tasks/batch",
        json=batch({"kind": "echo", "payload": {"b": 2}, "idempotency_key": "k2"}),
    )
    assert [item["id"] for item in again.json()["items"]] == [created["id"]]
    assert len(await stored_ids(api)) == 2


async def test_a_key_used_for_a_different_request_refuses_the_whole_batch(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/v1/tasks/batch", json=batch({"kind": "echo", "idempotency_key": "k1"}))
    before = await stored_ids(api)
    response = await api.post(
        "/v1/tasks/batch",
        json=batch(
            {"kind": "echo", "payload": {"new": True}},
            {"kind": "echo", "payload": {"other": 1}, "idempotency_key": "k1"},
        ),
    )
    assert_problem(response, 409, "idempotency-key-reused")
    assert await stored_ids(api) == before


async def test_an_idempotency_key_header_on_a_batch_is_refused(api: httpx.AsyncClient) -> None:
    """A batch takes a key per item: the header, which would make no repeat of the batch
    safe, is refused rather than ignored."""
    body = batch({"kind": "echo", "payload": {"n": 1}})
    response = await api.post("/v1/tasks/batch", json=body, headers={"Idempotency-Key": "b1"})
    problem = assert_problem(response, 400, "invalid-idempotency-key")
    assert "idempotency_key" in problem["detail"]
    assert await stored_ids(api) == []


def _items(count: int) -> list[dict[str, Any]]:
    return [{"kind": "echo"} for _ in range(count)]


@pytest.mark.parametrize(
    ("body", "slug", "named"),
    [
        ({"tasks": []}, "invalid-request", None),
        ({"tasks": _items(1001)}, "invalid-request", None),
        ({}, "invalid-request", None),
        ({"tasks": _items(1), "extra": 1}, "invalid-request", None),
        ([{"kind": "echo"}], "invalid-request", None),
        ({"tasks": [{"kind": "echo"}, {"payload": {}}]}, "invalid-request", ["body", "tasks", "1"]),
        (
            {"tasks": [{"kind": "echo", "idempotency_key": "a b"}]},
            "invalid-request",
            ["body", "tasks", "0"],
        ),
        ({"tasks": [{"kind": "echo"}, {"kind": "nope"}]}, "invalid-batch", 1),
        ({"tasks": [{"kind": "sleep", "payload": {"seconds": -1}}]}, "invalid-batch", 0),
        (
            {
                "tasks": [
                    {"kind": "echo", "idempotency_key": "k"},
                    {"kind": "echo", "idempotency_key": "k"},
                ]
            },
            "invalid-batch",
            1,
        ),
    ],
)
async def test_a_bad_batch_is_a_problem_and_stores_nothing(
    api_factory: ApiFactory, body: Any, slug: str, named: Any
) -> None:
    api = await api_factory(max_body_bytes=DEFAULT_MAX_BODY_BYTES)
    problem = assert_problem(await api.post("/v1/tasks/batch", json=body), 422, slug)
    if slug == "invalid-batch":
        assert [error["index"] for error in problem["errors"]] == [named]
    elif named is not None:
        assert any(error["location"][:3] == named for error in problem["errors"])
    assert await stored_ids(api) == []


async def test_a_batch_over_the_body_limit_is_refused(api: httpx.AsyncClient) -> None:
    body = json.dumps(batch(*({"kind": "echo", "payload": {"n": n}} for n in range(300))))
    response = await api.post(
        "/v1/tasks/batch", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "body-too-large")
    assert await stored_ids(api) == []
