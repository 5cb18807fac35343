"""A server killed right after accepting tasks loses none of them: restarted on the same
SQLite file, it runs every task to success and records each result once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.crash import assert_each_result_recorded_once, wait_until_all_succeeded
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

TASKS = 30
RECOVERY_SECONDS = 90
"""An attempt cut short by the crash is presumed lost only when its lease ends: the
task's timeout (1 s here) plus the domain's 30 s grace."""


def task_request(n: int) -> dict[str, Any]:
    """Echoes and short sleeps; the last third is scheduled 2-3 s after its submission,
    so none of those can have started before the crash."""
    request: dict[str, Any] = (
        {"kind": "echo", "payload": {"n": n}}
        if n % 2
        else {"kind": "sleep", "payload": {"seconds": 0.3}, "timeout_seconds": 1}
    )
    if n >= TASKS - TASKS // 3:
        request["run_at"] = (datetime.now(UTC) + timedelta(seconds=2 + n % 2)).isoformat()
    return request


async def submit_all(server: ServerProcess) -> dict[str, dict[str, Any]]:
    accepted = {}
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        for n in range(TASKS):
            response = await client.post("/v1/tasks", json=task_request(n))
            assert response.status_code == 201, response.text
            accepted[response.json()["id"]] = response.json()
    return accepted


async def test_tasks_accepted_before_a_crash_all_run_and_succeed_once(tmp_path: Path) -> None:
    env = {
        "TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}",
        "TASKPORT_SWEEP_INTERVAL_SECONDS": "0.1",
        "TASKPORT_RETRY_BASE_SECONDS": "0",
        "TASKPORT_LOG_LEVEL": "INFO",
    }
    first = ServerProcess(env, tmp_path / "first.log")
    await first.start()
    try:
        accepted = await submit_all(first)
    finally:
        first.kill()

    second = ServerProcess(env, tmp_path / "second.log")
    await second.start()
    try:
        tasks = await wait_until_all_succeeded(second, list(accepted), RECOVERY_SECONDS)
    finally:
        second.stop()

    assert_each_result_recorded_once(first, second, accepted)
    scheduled = {task_id for task_id, task in accepted.items() if task["status"] == "SCHEDULED"}
    assert len(scheduled) == TASKS // 3
    assert {tasks[task_id]["attempts"] for task_id in scheduled} == {1}
    # A task running when the server was killed lost that attempt and ran a second time.
    assert {task["attempts"] for task in tasks.values()} <= {1, 2}
