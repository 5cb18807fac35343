"""/v1/schedules: tasks submitted at the times of a cron expression, through HTTP."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import ApiFactory, wait_for_status
from tests.polling import eventually

ALICE = {"Authorization": "Bearer key-a"}
BOB = {"Authorization": "Bearer key-b"}
NIGHTLY = {"cron": "0 3 * * *", "timezone": "Europe/Paris", "kind": "echo", "payload": {"n": 1}}


async def created(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    answer = await api.post("/v1/schedules", json={**NIGHTLY, **body}, headers=ALICE)
    assert answer.status_code == 201, answer.json()
    assert answer.headers["location"] == f"/v1/schedules/{answer.json()['id']}"
    schedule: dict[str, Any] = answer.json()
    return schedule


async def test_a_schedule_is_created_read_paused_resumed_and_deleted_by_its_owner(
    api_factory: ApiFactory,
) -> None:
    api = await api_factory(api_keys="alice:key-a,bob:key-b")
    schedule = await created(api, name="nightly-report", max_attempts=2, expires_after_seconds=3600)
    path = f"/v1/schedules/{schedule['id']}"
    next_run_at = datetime.fromisoformat(schedule["next_run_at"])
    assert next_run_at.astimezone(UTC).hour in (1, 2)  # 03:00 in Paris
    assert next_run_at - datetime.now(UTC) <= timedelta(days=1)
    shown = ("name", "paused", "last_run_at", "max_attempts", "expires_after_seconds")
    assert {key: schedule[key] for key in shown} == {
        "name": "nightly-report",
        "paused": False,
        "last_run_at": None,
        "max_attempts": 2,
        "expires_after_seconds": 3600,
    }
    assert (await api.get(path, headers=ALICE)).json() == schedule
    for method, suffix in (("GET", ""), ("POST", "/pause"), ("POST", "/resume"), ("DELETE", "")):
        stranger = await api.request(method, path + suffix, headers=BOB)
        assert stranger.status_code == 404
        assert stranger.json()["type"].endswith("schedule-not-found")
    assert (await api.post(path + "/pause", headers=ALICE)).json()["paused"] is True
    assert (await api.post(path + "/resume", headers=ALICE)).json()["paused"] is False
    assert (await api.delete(path, headers=ALICE)).status_code == 204
    assert (await api.get(path, headers=ALICE)).status_code == 404


async def test_schedules_are_listed_newest_first_in_pages(api_factory: ApiFactory) -> None:
    api = await api_factory(api_keys="alice:key-a,bob:key-b")
    ids = [(await created(api))["id"] for _ in range(3)]
    first = (await api.get("/v1/schedules?limit=2", headers=ALICE)).json()
    assert [item["id"] for item in first["items"]] == ids[::-1][:2]
    rest = await api.get(f"/v1/schedules?limit=2&cursor={first['next_cursor']}", headers=ALICE)
    assert [item["id"] for item in rest.json()["items"]] == ids[:1]
    assert rest.json()["next_cursor"] is None
    assert (await api.get("/v1/schedules", headers=BOB)).json()["items"] == []
    # A cursor of the task list is not one of this list.
    for _ in range(2):
        await api.post("/v1/tasks", json={"kind": "echo"}, headers=ALICE)
    tasks_cursor = (await api.get("/v1/tasks?limit=1", headers=ALICE)).json()["next_cursor"]
    refused = await api.get(f"/v1/schedules?cursor={tasks_cursor}", headers=ALICE)
    assert refused.status_code == 400


async def test_bad_schedules_are_refused_with_a_problem(api_factory: ApiFactory) -> None:
    api = await api_factory(api_keys="alice:key-a")
    await created(api, name="nightly")
    for body, status, problem in (
        ({"cron": "0 3 * *"}, 422, "invalid-schedule"),
        ({"cron": "0 25 * * *"}, 422, "invalid-schedule"),
        ({"timezone": "Europe/Atlantis"}, 422, "invalid-schedule"),
        ({"timezone": "America"}, 422, "invalid-schedule"),
        ({"kind": "nope"}, 422, "unknown-kind"),
        ({"kind": "sleep", "payload": {"seconds": "x"}}, 422, "invalid-payload"),
        ({"name": "Not A Name"}, 422, "invalid-request"),
        ({"name": "nightly"}, 409, "schedule-name-taken"),
        ({"every": "day"}, 422, "invalid-request"),
        ({"expires_after_seconds": 0}, 422, "invalid-request"),
        ({"expires_after_seconds": "60"}, 422, "invalid-request"),
        ({"expires_after_seconds": 10**9}, 422, "invalid-request"),
    ):
        answer = await api.post("/v1/schedules", json={**NIGHTLY, **body}, headers=ALICE)
        assert answer.status_code == status, (body, answer.json())
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"].endswith(problem), answer.json()
    assert len((await api.get("/v1/schedules", headers=ALICE)).json()["items"]) == 1


async def test_a_due_schedule_submits_its_task_which_runs(
    api_factory: ApiFactory, tmp_path: Path
) -> None:
    database = tmp_path / "taskport.db"
    api = await api_factory(storage_url=f"sqlite:///{database}", api_keys="alice:key-a")
    schedule = await created(api, payload={"report": "sales"}, expires_after_seconds=600)
    # As if 03:00 had come: the schedule is due a minute ago.
    due = (datetime.now(UTC) - timedelta(minutes=1)).replace(tzinfo=None)

    def make_due() -> None:  # in a thread: the API's writes go on meanwhile, on this loop
        with sqlite3.connect(database, timeout=30) as connection:
            connection.execute(
                "UPDATE schedules SET next_run_at = ? WHERE id = ?",
                (due.isoformat(" ", "microseconds"), schedule["id"].replace("-", "")),
            )

    await asyncio.to_thread(make_due)

    async def ran() -> bool:
        found = await api.get(f"/v1/schedules/{schedule['id']}", headers=ALICE)
        return found.json()["last_task_id"] is not None

    await eventually(ran)
    moved = (await api.get(f"/v1/schedules/{schedule['id']}", headers=ALICE)).json()
    assert moved["next_run_at"] == schedule["next_run_at"]
    task = await wait_for_status(api, moved["last_task_id"], "SUCCEEDED", headers=ALICE)
    assert (task["result"], task["schedule_id"]) == ({"report": "sales"}, schedule["id"])
    expires_at = datetime.fromisoformat(task["expires_at"])
    assert expires_at == due.replace(tzinfo=UTC) + timedelta(seconds=600)
    tasks = (await api.get("/v1/tasks", headers=ALICE)).json()["items"]
    assert [found["id"] for found in tasks] == [moved["last_task_id"]]
    await api.post("/v1/tasks", json={"kind": "echo", "payload": {}}, headers=ALICE)
    its_tasks = await api.get("/v1/tasks", params={"schedule_id": schedule["id"]}, headers=ALICE)
    assert [found["id"] for found in its_tasks.json()["items"]] == [moved["last_task_id"]]


async def test_an_owner_has_at_most_the_schedules_of_the_limit(api_factory: ApiFactory) -> None:
    api = await api_factory(api_keys="alice:key-a,bob:key-b", max_schedules_per_owner=2)
    first = await created(api)
    await created(api)
    refused = await api.post("/v1/schedules", json=NIGHTLY, headers=ALICE)
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("too-many-schedules")
    assert (await api.post("/v1/schedules", json=NIGHTLY, headers=BOB)).status_code == 201
    await api.delete(f"/v1/schedules/{first['id']}", headers=ALICE)
    await created(api)
