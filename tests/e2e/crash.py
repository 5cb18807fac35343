"""What a crash test asks of the tasks a server accepted before it was killed (SIGKILL),
once a second server on the same storage has taken over."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import httpx

from tests.e2e.server import ServerProcess
from tests.polling import eventually


async def wait_until_all_succeeded(
    server: ServerProcess, ids: Sequence[str], within: float
) -> dict[str, Any]:
    """The tasks ``ids`` as ``server`` shows them once every one has SUCCEEDED."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:

        async def current() -> dict[str, Any]:
            return {task_id: (await client.get(f"/v1/tasks/{task_id}")).json() for task_id in ids}

        async def all_succeeded() -> bool:
            return all(task["status"] == "SUCCEEDED" for task in (await current()).values())

        await eventually(all_succeeded, within=within, interval=0.2)
        return await current()


def assert_each_result_recorded_once(
    killed: ServerProcess, restarted: ServerProcess, accepted: Collection[str]
) -> None:
    """No accepted task's success is logged twice across both servers, and the restarted
    server finished some of them (or the crash proved nothing).

    A success committed just before the SIGKILL may miss its log line (the process died
    between commit and log), so "logged once" is asked only of the tasks finished by the
    restarted server."""
    logs = killed.log.read_text() + restarted.log.read_text()
    succeeded = Counter(re.findall(r"TaskSucceeded task=(\S+)", logs))
    assert set(succeeded) <= set(accepted)
    assert max(succeeded.values()) == 1, "a result was recorded twice"
    finished_late = set(re.findall(r"TaskSucceeded task=(\S+)", restarted.log.read_text()))
    assert finished_late, "the restarted server finished no task: the test proves nothing"
