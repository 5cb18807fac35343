"""Taskport on MongoDB end to end: in process, and as a ``taskport serve`` process that is
killed with SIGKILL right after accepting tasks and loses none of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ApiFactory, wait_for_status
from tests.e2e.crash import assert_each_result_recorded_once, wait_until_all_succeeded
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

ALICE = {"Authorization": "Bearer key-a"}
BOB = {"Authorization": "Bearer key-b"}


async def test_on_mongodb_tasks_run_page_and_stay_with_their_owner(
    api_factory: ApiFactory, mongo_url: str
) -> None:
    api = await api_factory(storage_url=mongo_url, api_keys="alice:key-a,bob:key-b")
    created = await api.post("/v1/tasks", json={"kind": "echo", "payload": {"n": 0}}, headers=ALICE)
    assert created.status_code == 201
    done = await wait_for_status(api, created.json()["id"], "SUCCEEDED", headers=ALICE)
    assert done["result"] == {"n": 0}

    ids = [created.json()["id"]]
    for n in range(1, 12):
        response = await api.post("/v1/tasks", json={"kind": "echo", "payload": n}, headers=ALICE)
        ids.append(response.json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/tasks", params=params, headers=ALICE)).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))

    stranger = await api.get(f"/v1/tasks/{ids[0]}", headers=BOB)
    assert stranger.status_code == 404
    assert stranger.headers["content-type"] == "application/problem+json"
    assert (await api.get("/v1/tasks", headers=BOB)).json()["items"] == []


async def test_on_mongodb_a_task_is_deleted_as_soon_as_its_result_is_read(
    api_factory: ApiFactory, mongo_url: str
) -> None:
    """Its run message may still be in its document then (the relay marks a message sent a
    moment after its publish): the delete waits for it rather than answering 409."""
    api = await api_factory(storage_url=mongo_url)
    for n in range(5):
        created = await api.post("/v1/tasks", json={"kind": "echo", "payload": n})
        task_id = created.json()["id"]
        done = await api.get(f"/v1/tasks/{task_id}", params={"wait": 10})
        assert done.json()["status"] == "SUCCEEDED"
        deleted = await api.delete(f"/v1/tasks/{task_id}")
        assert deleted.status_code == 204, deleted.text
        assert (await api.get(f"/v1/tasks/{task_id}")).status_code == 404


def server_env(mongo_url: str) -> dict[str, str]:
    return {
        "TASKPORT_STORAGE_URL": mongo_url,
        "TASKPORT_SWEEP_INTERVAL_SECONDS": "0.1",
        "TASKPORT_RETRY_BASE_SECONDS": "0",
        "TASKPORT_LOG_LEVEL": "INFO",
    }


async def test_taskport_serve_on_mongodb_runs_an_echo_task(mongo_url: str, tmp_path: Path) -> None:
    server = ServerProcess(server_env(mongo_url), tmp_path / "serve.log")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            created = await client.post("/v1/tasks", json={"kind": "echo", "payload": "hi"})
            assert created.status_code == 201
            done = await wait_for_status(client, created.json()["id"], "SUCCEEDED")
            assert done["result"] == "hi"
    finally:
        server.stop()


TASKS = 20


async def test_a_server_killed_after_accepting_tasks_loses_none(
    mongo_url: str, tmp_path: Path
) -> None:
    env = server_env(mongo_url)
    first = ServerProcess(env, tmp_path / "first.log")
    await first.start()
    accepted: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=first.base_url) as client:
            # A third runs later: those wait for the restarted server, whatever the timing.
            later = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
            for n in range(TASKS):
                body: dict[str, Any] = {"kind": "echo", "payload": n}
                if n % 3 == 0:
                    body["run_at"] = later
                response = await client.post("/v1/tasks", json=body)
                assert response.status_code == 201, response.text
                accepted[response.json()["id"]] = response.json()
    finally:
        first.kill()

    second = ServerProcess(env, tmp_path / "second.log")
    await second.start()
    try:
        await wait_until_all_succeeded(second, list(accepted), within=60)
    finally:
        second.stop()
    assert_each_result_recorded_once(first, second, accepted)
