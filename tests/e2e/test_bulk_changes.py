"""Changes to many tasks at once: cancel what waits (POST /v1/tasks/cancel), retry what
failed (POST /v1/tasks/retry), a bounded number per call until none is left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ApiFactory, wait_for_status

QUEUES = ["default", "images"]


async def submitted(api: httpx.AsyncClient, **body: Any) -> str:
    response = await api.post("/v1/tasks", json={"kind": "echo", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def status_of(api: httpx.AsyncClient, task_id: str) -> str:
    return str((await api.get(f"/v1/tasks/{task_id}")).json()["status"])


async def test_what_waits_in_a_queue_is_cancelled_a_page_at_a_time(
    api_factory: ApiFactory,
) -> None:
    # The worker takes the default queue only: the tasks of "images" wait.
    api: httpx.AsyncClient = await api_factory(queues=QUEUES, worker_queues=["default"])
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    waiting = [await submitted(api, queue="images", payload=n) for n in range(4)]
    waiting.append(await submitted(api, queue="images", run_at=later))
    ran = await submitted(api)
    await wait_for_status(api, ran, "SUCCEEDED")
    first = await api.post("/v1/tasks/cancel", json={"queue": "images", "limit": 2})
    assert first.status_code == 200, first.text
    assert first.json() == {"ids": waiting[:-3:-1], "more": True}  # newest first
    rest = (await api.post("/v1/tasks/cancel", json={"queue": "images"})).json()
    assert rest == {"ids": waiting[-3::-1], "more": False}
    assert {await status_of(api, task_id) for task_id in waiting} == {"CANCELLED"}
    assert await status_of(api, ran) == "SUCCEEDED"
    again = (await api.post("/v1/tasks/cancel", json={"queue": "images"})).json()
    assert again == {"ids": [], "more": False}


async def test_cancelled_and_failed_tasks_are_retried_by_filter(api_factory: ApiFactory) -> None:
    api: httpx.AsyncClient = await api_factory(queues=QUEUES, worker_queues=["default"])
    failed = await submitted(api, kind="fail", payload={"message": "boom"}, max_attempts=1)
    first_end = (await wait_for_status(api, failed, "FAILED"))["finished_at"]
    parked = await submitted(api, queue="images")
    await api.post("/v1/tasks/cancel", json={"queue": "images"})
    assert await status_of(api, parked) == "CANCELLED"
    # FAILED by default: the cancelled task stays cancelled.
    retried = (await api.post("/v1/tasks/retry", json={"kind": "fail"})).json()
    assert retried == {"ids": [failed], "more": False}
    again = await wait_for_status(api, failed, "FAILED")
    assert again["finished_at"] > first_end
    assert await status_of(api, parked) == "CANCELLED"
    body = {"status": ["CANCELLED"], "queue": "images"}
    assert (await api.post("/v1/tasks/retry", json=body)).json() == {
        "ids": [parked],
        "more": False,
    }
    assert await status_of(api, parked) == "QUEUED"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/tasks/cancel", {"status": ["RUNNING"]}),
        ("/v1/tasks/cancel", {"status": []}),
        ("/v1/tasks/retry", {"status": ["SUCCEEDED"]}),
        ("/v1/tasks/cancel", {"limit": 0}),
        ("/v1/tasks/retry", {"limit": 1001}),
        ("/v1/tasks/cancel", {"queue": "Images!"}),
        ("/v1/tasks/retry", {"kind": ""}),
        ("/v1/tasks/cancel", {"owner": "someone-else"}),
    ],
)
async def test_a_filter_that_cannot_be_is_refused_and_changes_nothing(
    api_factory: ApiFactory, path: str, body: dict[str, Any]
) -> None:
    api: httpx.AsyncClient = await api_factory(queues=QUEUES, worker_queues=["default"])
    waiting = await submitted(api, queue="images")
    refused = await api.post(path, json=body)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert await status_of(api, waiting) == "QUEUED"


async def test_a_get_of_a_bulk_route_is_a_method_not_allowed(api_factory: ApiFactory) -> None:
    api: httpx.AsyncClient = await api_factory()
    for path in ("/v1/tasks/cancel", "/v1/tasks/retry"):
        answer = await api.get(path)
        assert (answer.status_code, answer.headers["allow"]) == (405, "POST")
