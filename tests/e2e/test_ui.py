"""The /ui page in headless Chromium against ``taskport serve``: what it shows, what its
buttons do, how it asks for a key, and that it loads nothing but this server's files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.browser import Page, chromium
from tests.e2e.server import ServerProcess, serving_embedded
from tests.polling import eventually

KEYS = {
    "alice": "key-a",
    "bob": "key-b",
    "carol": "key-c",
    "dave": "key-d",
    "erin": "key-e",
    "fay": "key-f",
    "gus": "key-g",
    "hal": "key-h",
    "ivy": "key-i",
}
ROW_IDS = "[...document.querySelectorAll('#task-rows tr')].map((row) => row.dataset.taskId)"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    keys = ",".join(f"{owner}:{key}" for owner, key in KEYS.items())
    env = {
        "TASKPORT_API_KEYS": keys,
        # The embedded worker leaves the tasks of "images" queued; it runs 8 of "default"
        # at once.
        "TASKPORT_QUEUES": "default,images",
        "TASKPORT_WORKER_QUEUES": "default:8",
    }
    with serving_embedded(tmp_path_factory.mktemp("ui"), env) as server:
        yield server


def client(served: ServerProcess, owner: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {KEYS[owner]}"}
    return httpx.AsyncClient(base_url=served.base_url, headers=headers)


async def submitted(api: httpx.AsyncClient, body: dict[str, Any], status: str) -> str:
    task_id: str = (await api.post("/v1/tasks", json=body)).json()["id"]

    async def reached() -> bool:
        return (await api.get(f"/v1/tasks/{task_id}")).json()["status"] == status

    await eventually(reached)
    return task_id


async def open_ui(page: Page, served: ServerProcess, owner: str, fragment: str = "") -> None:
    """The page with ``owner``'s key in the tab's session storage, as its form keeps it."""
    await page.goto(f"{served.base_url}/ui")
    await page.evaluate(f"sessionStorage.setItem('taskport-api-key', '{KEYS[owner]}')")
    await page.goto("about:blank")
    await page.goto(f"{served.base_url}/ui#{fragment}")
    await page.wait_for("document.body?.dataset.loaded === 'true'")


async def test_the_page_lists_the_tasks_of_the_statuses_chosen_with_their_counts(
    served: ServerProcess,
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    async with client(served, "alice") as api:
        done = await submitted(api, {"kind": "echo"}, "SUCCEEDED")
        failed = await submitted(api, {"kind": "fail", "max_attempts": 1}, "FAILED")
        waiting = await submitted(api, {"kind": "echo", "run_at": later}, "SCHEDULED")
    async with chromium() as page:
        await open_ui(page, served, "alice", "status=FAILED,SCHEDULED")
        assert await page.wait_for(f"{ROW_IDS}.length === 2 && {ROW_IDS}") == [waiting, failed]
        counts = await page.evaluate(
            "[...document.querySelectorAll('#status-counts button')].map((b) => b.textContent)"
        )
        assert counts == [
            "SCHEDULED 1", "QUEUED 0", "RUNNING 0", "SUCCEEDED 1", "FAILED 1", "CANCELLED 0"
        ]  # fmt: skip
        # One more status from its box: the newest first, across the three.
        await page.evaluate("document.querySelector('#status-filter [value=SUCCEEDED]').click()")
        assert await page.wait_for(f"{ROW_IDS}.length === 3 && {ROW_IDS}") == [
            waiting,
            failed,
            done,
        ]
        assert await page.evaluate("location.hash") == "#status=FAILED%2CSCHEDULED%2CSUCCEEDED"
        # And one kind, chosen from those the server registered.
        await page.wait_for("!!document.querySelector('#kind-filter [value=fail]')")
        await page.evaluate(
            "const kind = document.getElementById('kind-filter');"
            "kind.value = 'fail'; kind.dispatchEvent(new Event('change'))"
        )
        assert await page.wait_for(f"{ROW_IDS}.length === 1 && {ROW_IDS}") == [failed]
        assert (await page.evaluate("location.hash")).endswith("&kind=fail")


async def test_a_task_is_cancelled_retried_and_deleted_from_its_panel(
    served: ServerProcess,
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    async with client(served, "bob") as api:
        task_id = await submitted(api, {"kind": "echo", "run_at": later}, "SCHEDULED")

        async def status() -> str:
            answer = await api.get(f"/v1/tasks/{task_id}")
            found: str = answer.json()["status"] if answer.status_code == 200 else "gone"
            return found

        async def press(action: str, then: str) -> None:
            await page.evaluate(f"document.querySelector('[data-action={action}]').click()")
            await eventually(lambda: _is(status(), then))
            await page.wait_for(
                f"document.querySelector('#task-fields dd').textContent === '{then}'"
            )

        async with chromium() as page:
            await open_ui(page, served, "bob", f"task={task_id}")
            await page.wait_for("!document.getElementById('task').hidden")
            enabled = (
                "[...document.querySelectorAll('#task-actions button')].map((b) => !b.disabled)"
            )
            assert await page.evaluate(enabled) == [True, False, False]
            await press("cancel", "CANCELLED")
            assert await page.evaluate(enabled) == [False, True, True]
            await press("retry", "SUCCEEDED")  # queued again, and run at once
            await page.evaluate("window.confirm = () => true")
            await page.evaluate("document.querySelector('[data-action=delete]').click()")
            await eventually(lambda: _is(status(), "gone"))
            await page.wait_for("document.getElementById('task').hidden")
            assert await page.wait_for(f"{ROW_IDS}.length === 0 && 'none'") == "none"


async def test_the_waiting_tasks_of_a_queue_are_cancelled_and_retried_at_once(
    served: ServerProcess,
) -> None:
    async with client(served, "ivy") as api, chromium() as page:
        waiting = [
            await submitted(api, {"kind": "echo", "queue": "images"}, "QUEUED") for _ in range(3)
        ]
        ran = await submitted(api, {"kind": "echo"}, "SUCCEEDED")
        await open_ui(page, served, "ivy", "queue=images")
        assert await page.wait_for(f"{ROW_IDS}.length === 3 && {ROW_IDS}") == waiting[::-1]
        await page.evaluate("window.asked = []; window.confirm = (q) => (asked.push(q), true)")
        await page.evaluate("document.getElementById('bulk-cancel').click()")
        message = "document.getElementById('message').textContent"
        assert await page.wait_for(f"{message}.startsWith('cancelled') && {message}") == (
            "cancelled 3 tasks"
        )
        assert await page.evaluate("asked") == [
            "Cancel every task (SCHEDULED or QUEUED, queue images)?"
        ]
        statuses = (
            "[...document.querySelectorAll('#task-rows tr')]"
            ".map((row) => row.children[3].textContent)"
        )
        assert (
            await page.wait_for(f"{statuses}.every((s) => s === 'CANCELLED') && {statuses}")
            == ["CANCELLED"] * 3
        )
        # Only the chosen statuses: with CANCELLED chosen, a cancel has nothing to take.
        await page.evaluate("document.querySelector('[data-status=CANCELLED]').click()")
        assert await page.wait_for("document.getElementById('bulk-cancel').disabled")
        await page.evaluate("document.getElementById('bulk-retry').click()")
        assert await page.wait_for(f"{message}.startsWith('retried') && {message}") == (
            "retried 3 tasks"
        )
        for task_id in waiting:
            assert (await api.get(f"/v1/tasks/{task_id}")).json()["status"] == "QUEUED"
        assert (await api.get(f"/v1/tasks/{ran}")).json()["status"] == "SUCCEEDED"


async def _is(status: Any, wanted: str) -> bool:
    return bool(await status == wanted)


async def test_what_a_task_holds_is_shown_as_text_never_run_as_markup(
    served: ServerProcess,
) -> None:
    markup = "<img src=x onerror=document.title='ran'>"
    async with client(served, "carol") as api:
        task_id = await submitted(api, {"kind": "echo", "payload": {markup: markup}}, "SUCCEEDED")
    async with chromium() as page:
        await open_ui(page, served, "carol", f"task={task_id}")
        shown = await page.wait_for(
            "!document.getElementById('task').hidden && "
            "document.getElementById('task-fields').textContent"
        )
        assert shown.count(markup) == 4  # the payload's key and value, and the result's
        assert await page.evaluate("document.querySelectorAll('img').length") == 0
        assert await page.evaluate("document.title") == "Taskport"


async def test_the_page_asks_for_a_key_and_keeps_it_in_the_tab_only(
    served: ServerProcess,
) -> None:
    async with client(served, "dave") as api:
        task_id = await submitted(api, {"kind": "echo"}, "SUCCEEDED")
    async with chromium() as page:
        await page.goto(f"{served.base_url}/ui")
        await page.wait_for("!document.getElementById('key-form').hidden")
        assert await page.wait_for("document.getElementById('message').textContent") == (
            "An API key is needed."
        )
        assert await page.evaluate(f"{ROW_IDS}.length") == 0
        await page.evaluate(
            f"document.getElementById('key').value = '{KEYS['dave']}';"
            "document.getElementById('key-form').requestSubmit()"
        )
        assert await page.wait_for(f"{ROW_IDS}.length === 1 && {ROW_IDS}") == [task_id]
        assert await page.evaluate("document.getElementById('key-form').hidden")
        assert await page.evaluate("document.getElementById('message').hidden")
        kept = "[sessionStorage.getItem('taskport-api-key'), localStorage.length]"
        assert await page.evaluate(kept) == [KEYS["dave"], 0]
        await page.evaluate("document.getElementById('forget-key').click()")
        assert await page.evaluate("sessionStorage.length") == 0
        assert not await page.evaluate("document.getElementById('key-form').hidden")
        await page.evaluate(
            "document.getElementById('key').value = 'not-a-key';"
            "document.getElementById('key-form').requestSubmit()"
        )
        refused = "document.getElementById('message').textContent === 'This key is refused.'"
        await page.wait_for(f"{refused} && !document.getElementById('key-form').hidden")
        await page.evaluate(
            f"document.getElementById('key').value = '{KEYS['dave']}';"
            "document.getElementById('key-form').requestSubmit()"
        )
        kinds = "[...document.querySelectorAll('#kind-filter option')].map((o) => o.value)"
        assert await page.wait_for(f"{kinds}.length > 1 && {kinds}") == [
            "", "echo", "fail", "http", "predict", "sleep"
        ]  # fmt: skip


async def test_the_page_and_its_files_come_from_this_server_alone(
    served: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=served.base_url) as anyone:
        for path, media_type in (
            ("/ui", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/app.css", "text/css"),
        ):
            answer = await anyone.get(path)
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith(media_type)
            policy = answer.headers["content-security-policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy
            assert not re.search(r"https?://|//[a-z]", answer.text), path
            head = await anyone.head(path)
            assert (head.status_code, head.content) == (200, b"")
        missing = await anyone.get("/ui/other.js")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        document = (await anyone.get("/openapi.json")).json()
        assert not [path for path in document["paths"] if path.startswith("/ui")]


async def test_an_address_opens_a_task_by_its_id_only(served: ServerProcess) -> None:
    async with chromium() as page:
        for fragment in ("task=../schedules", "task=01a2%2F..%2F..%2Fhealthz"):
            await open_ui(page, served, "alice", fragment)
            assert await page.evaluate("document.getElementById('task').hidden")
            assert await page.evaluate("document.getElementById('message').hidden")


async def test_pages_of_tasks_are_walked_older_and_back(served: ServerProcess) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    async with client(served, "erin") as api:
        batch = {"tasks": [{"kind": "echo", "run_at": later} for _ in range(60)]}
        ids = [
            task["id"] for task in (await api.post("/v1/tasks/batch", json=batch)).json()["items"]
        ]
    newest_first = ids[::-1]
    disabled = "['newest', 'newer', 'older'].map((id) => document.getElementById(id).disabled)"
    async with chromium() as page:
        await open_ui(page, served, "erin")
        assert await page.wait_for(f"{ROW_IDS}.length === 50 && {ROW_IDS}") == newest_first[:50]
        assert await page.evaluate(disabled) == [True, True, False]
        await page.evaluate("document.getElementById('older').click()")
        assert await page.wait_for(f"{ROW_IDS}.length === 10 && {ROW_IDS}") == newest_first[50:]
        assert await page.evaluate(disabled) == [False, False, True]
        await page.evaluate("document.getElementById('newer').click()")
        assert await page.wait_for(f"{ROW_IDS}.length === 50 && {ROW_IDS}") == newest_first[:50]
        assert await page.evaluate(disabled) == [True, True, False]


async def test_schedules_are_paused_and_resumed_and_workers_listed(served: ServerProcess) -> None:
    schedule = {"name": "nightly", "cron": "0 3 * * *", "kind": "echo", "payload": {}}
    async with client(served, "fay") as api:
        created = (await api.post("/v1/schedules", json=schedule)).json()

        async def paused() -> bool:
            answer: bool = (await api.get(f"/v1/schedules/{created['id']}")).json()["paused"]
            return answer

        cells = "[...document.querySelectorAll('#schedule-rows td')].map((td) => td.textContent)"
        async with chromium() as page:
            await open_ui(page, served, "fay", "view=schedules")
            shown = await page.wait_for(f"{cells}.length && {cells}")
            assert shown[:4] == ["nightly", "0 3 * * *", "UTC", "echo"]
            assert shown[-1] == "Pause"
            assert await page.evaluate("document.getElementById('view-tasks').hidden")
            await page.evaluate("document.querySelector('#schedule-rows button').click()")
            await eventually(paused)
            assert (await page.wait_for(f"{cells}[6] === 'Resume' && {cells}"))[4] == "paused"
            await page.evaluate("document.querySelector('#schedule-rows button').click()")
            await eventually(lambda: _negated(paused()))
            await page.wait_for(f"{cells}[6] === 'Pause'")

            await page.evaluate("document.querySelector('nav [data-view=workers]').click()")
            assert await page.evaluate("location.hash") == "#view=workers"
            worker = "document.querySelector('#worker-rows td:nth-child(2)')?.textContent"
            assert await page.wait_for(worker) == "alive"


async def _negated(condition: Any) -> bool:
    return not await condition


async def test_the_page_shows_new_tasks_by_itself(served: ServerProcess) -> None:
    async with client(served, "gus") as api, chromium() as page:
        await open_ui(page, served, "gus")
        assert await page.evaluate("document.getElementById('no-tasks').hidden") is False
        first = await submitted(api, {"kind": "echo"}, "SUCCEEDED")
        assert await page.wait_for(f"{ROW_IDS}.length === 1 && {ROW_IDS}") == [first]
        counts = "document.querySelector('[data-status=SUCCEEDED]').textContent"
        assert await page.evaluate(counts) == "SUCCEEDED 1"


async def test_each_task_shows_its_queue_and_each_worker_the_queues_it_takes(
    served: ServerProcess,
) -> None:
    async with client(served, "hal") as api, chromium() as page:
        waiting = await submitted(api, {"kind": "echo", "queue": "images"}, "QUEUED")
        ran = await submitted(api, {"kind": "echo"}, "SUCCEEDED")
        await open_ui(page, served, "hal")
        queues = (
            "Object.fromEntries([...document.querySelectorAll('#task-rows tr')]"
            ".map((row) => [row.dataset.taskId, row.children[2].textContent]))"
        )
        assert await page.wait_for(f"Object.keys({queues}).length === 2 && {queues}") == {
            waiting: "images",
            ran: "default",
        }
        # The queue filter offers the queues holding tasks, and keeps the one chosen.
        offered = "[...document.querySelectorAll('#queue-filter option')].map((o) => o.value)"
        assert await page.wait_for(f"{offered}.length === 3 && {offered}") == [
            "",
            "default",
            "images",
        ]
        await page.evaluate(
            "const queue = document.getElementById('queue-filter');"
            "queue.value = 'images'; queue.dispatchEvent(new Event('change'))"
        )
        assert await page.wait_for(f"{ROW_IDS}.length === 1 && {ROW_IDS}") == [waiting]
        assert (await page.evaluate("location.hash")).endswith("queue=images")
        await page.goto(f"{served.base_url}/ui#task={waiting}")
        fields = "document.getElementById('task-fields').textContent"
        assert "queueimages" in await page.wait_for(f"{fields}.includes('queue') && {fields}")
        await page.evaluate("document.querySelector('nav [data-view=workers]').click()")
        shown = "document.querySelector('#worker-rows td:nth-child(3)')?.textContent"
        assert await page.wait_for(shown) == "default (8)"  # with its limit
