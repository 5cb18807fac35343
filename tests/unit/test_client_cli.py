"""The client commands facing servers that misbehave, and arguments that are not what they
should be: a message and an exit status, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from entrypoints import client_cli
from entrypoints.cli import app

TASK_ID = "01a207cd-be7b-757e-8750-68195414f15e"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> Callable[[Handler], list[str]]:
    """Makes the commands talk to ``handler`` instead of the network; returns the paths
    asked, in order."""
    real_client = httpx.Client

    def install(handler: Handler) -> list[str]:
        asked: list[str] = []

        def answer(request: httpx.Request) -> httpx.Response:
            asked.append(str(request.url.copy_with(query=None)).split("taskport", 1)[-1])
            return handler(request)

        def client(**options: Any) -> httpx.Client:
            return real_client(transport=httpx.MockTransport(answer), **options)

        monkeypatch.setattr(client_cli.httpx, "Client", client)
        return asked

    return install


def run(*args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--url", "http://taskport"])


@pytest.mark.parametrize("task_id", ["../../healthz", "not-a-uuid", "01a2/cancel"])
@pytest.mark.parametrize("command", ["get", "cancel", "retry"])
def test_a_task_id_that_is_not_one_is_a_usage_error_and_asks_nothing(
    serving: Any, command: str, task_id: str
) -> None:
    asked = serving(lambda request: httpx.Response(200, json={}))
    result = run(command, task_id)
    assert result.exit_code == 2
    assert "Invalid value for 'ID'" in result.output
    assert asked == []


def test_a_server_url_that_cannot_be_one_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["list", "--url", "http://[::1"])
    assert result.exit_code == 2
    assert "Invalid value for --url" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("key", ["ключ", "line\nbreak", "tab\there"])
def test_an_api_key_no_header_can_carry_is_a_usage_error_and_asks_nothing(
    serving: Any, key: str
) -> None:
    asked = serving(lambda request: httpx.Response(200, json={"items": []}))
    result = run("list", "--api-key", key)
    assert result.exit_code == 2
    assert "Invalid value for '--api-key'" in result.output
    assert asked == []


def test_an_api_key_is_sent_without_the_spaces_around_it(serving: Any) -> None:
    """As a key read from a file or a secret often ends with a newline; the server drops
    them too."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["authorization"])
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    serving(answer)
    assert run("list", "--api-key", " s3cret key\n").exit_code == 0
    assert sent == ["Bearer s3cret key"]


@pytest.mark.parametrize("key", ["café", "order\n42"])
def test_an_idempotency_key_no_header_can_carry_is_a_usage_error_and_asks_nothing(
    serving: Any, key: str
) -> None:
    asked = serving(lambda request: httpx.Response(201, json={}))
    result = run("submit", "echo", "--idempotency-key", key)
    assert result.exit_code == 2
    assert "Invalid value for '--idempotency-key'" in result.output
    assert asked == []


def test_a_server_answering_without_json_is_one_line_and_exit_3(serving: Any) -> None:
    serving(lambda request: httpx.Response(200, text="<html>hello</html>"))
    result = run("list")
    assert result.exit_code == 3
    assert "answered without JSON: is it a Taskport server?" in result.output
    assert isinstance(result.exception, SystemExit)


def test_waiting_rides_out_a_server_restart(serving: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_cli.time, "sleep", lambda seconds: None)
    reads = iter(["down", "down", "RUNNING", "down", "SUCCEEDED"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json={"id": TASK_ID, "status": "QUEUED"})
        state = next(reads)
        if state == "down":
            raise httpx.ConnectError("connection refused", request=request)
        assert request.url.params["wait"] == str(client_cli.FOLLOW_WAIT)
        body = {"id": TASK_ID, "status": state, "attempts": 1, "result": {"ok": True}}
        return httpx.Response(200, json=body)

    asked = serving(handler)
    result = run("submit", "echo", "--wait")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True}
    assert asked == ["/v1/tasks"] + [f"/v1/tasks/{TASK_ID}"] * 5


def test_waiting_gives_up_on_a_server_gone_for_good(
    serving: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(client_cli.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(client_cli.time, "monotonic", lambda: float(next(clock)))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json={"id": TASK_ID, "status": "QUEUED"})
        raise httpx.ConnectError("connection refused", request=request)

    serving(handler)
    result = run("submit", "echo", "--wait")
    assert result.exit_code == 3
    assert "cannot reach http://taskport" in result.output


def test_stopping_a_wait_names_the_task_that_goes_on(serving: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json={"id": TASK_ID, "status": "QUEUED"})
        raise KeyboardInterrupt

    serving(handler)
    result = run("submit", "echo", "--wait")
    assert result.exit_code == 130
    assert f"task {TASK_ID} goes on (taskport get {TASK_ID} to look again)" in result.output


def test_schedule_add_sends_what_was_given_and_delete_takes_a_204(serving: Any) -> None:
    sent: list[Any] = []
    schedule = {
        "id": TASK_ID,
        "name": "nightly",
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "paused": False,
        "next_run_at": "2026-12-08T02:00:00Z",
        "last_run_at": None,
        "last_task_id": None,
        "kind": "echo",
        "payload": {"a": 1},
        "expires_after_seconds": 5400,
        "queue": "reports",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(204)
        sent.append(json.loads(request.content))
        return httpx.Response(201, json=schedule)

    asked = serving(handler)
    added = run(
        "schedule",
        "add",
        "echo",
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Paris",
        "--name",
        "nightly",
        "-p",
        '{"a": 1}',
        "--expires-after",
        "1.5h",
        "--queue",
        "reports",
    )
    assert added.exit_code == 0, added.output
    assert sent == [
        {
            "kind": "echo",
            "cron": "0 3 * * *",
            "timezone": "Europe/Paris",
            "payload": {"a": 1},
            "paused": False,
            "name": "nightly",
            "expires_after_seconds": 5400.0,
            "queue": "reports",
        }
    ]
    assert "2026-12-08 02:00:00 UTC" in added.output
    assert "reports" in added.output
    assert "5400 s" in added.output
    deleted = run("schedule", "delete", TASK_ID)
    assert deleted.exit_code == 0, deleted.output
    assert f"deleted schedule {TASK_ID}" in deleted.output
    assert asked == ["/v1/schedules", f"/v1/schedules/{TASK_ID}"]


def test_submit_names_the_queue_given_and_shows_any_but_the_default(serving: Any) -> None:
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        task = {
            "id": TASK_ID,
            "kind": "echo",
            "queue": body.get("queue", "default"),
            "status": "QUEUED",
            "attempts": 0,
            "max_attempts": 3,
            "created_at": "2026-12-07T10:00:00Z",
            "payload": {},
            "result": None,
        }
        return httpx.Response(201, json=task)

    serving(handler)
    named = run("submit", "echo", "--queue", "images")
    plain = run("submit", "echo")
    assert (named.exit_code, plain.exit_code) == (0, 0), named.output + plain.output
    assert sent == [
        {"kind": "echo", "payload": {}, "queue": "images"},
        {"kind": "echo", "payload": {}},
    ]
    assert "images" in named.output
    assert "queue" not in plain.output


@pytest.mark.parametrize("seconds", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    "command", [["submit", "echo"], ["schedule", "add", "echo", "--cron", "@daily"]]
)
def test_a_timeout_that_is_no_number_of_seconds_is_a_usage_error_and_asks_nothing(
    serving: Any, command: list[str], seconds: str
) -> None:
    asked = serving(lambda request: httpx.Response(201, json={}))
    result = run(*command, "--timeout", seconds)
    assert result.exit_code == 2
    assert "Invalid value for '--timeout'" in result.output
    assert asked == []


@pytest.mark.parametrize(("given", "seconds"), [("90", 90.0), ("2.5", 2.5), ("10m", 600.0)])
def test_a_schedule_s_expiry_is_seconds_or_a_duration_with_its_unit(
    serving: Any, given: str, seconds: float
) -> None:
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(201, json={})

    serving(handler)
    run("schedule", "add", "echo", "--cron", "@daily", "--expires-after", given, "--json")
    assert [body["expires_after_seconds"] for body in sent] == [seconds]


@pytest.mark.parametrize("given", ["soon", "1w", "nan", "-5m"])
def test_an_expiry_that_is_no_duration_is_a_usage_error_and_asks_nothing(
    serving: Any, given: str
) -> None:
    asked = serving(lambda request: httpx.Response(201, json={}))
    result = run("schedule", "add", "echo", "--cron", "@daily", "--expires-after", given)
    assert result.exit_code == 2
    assert "Invalid value for '--expires-after'" in result.output
    assert asked == []


def test_stats_shows_a_count_per_kind_and_status_and_the_oldest_wait(serving: Any) -> None:
    statuses = ["SCHEDULED", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
    answer = {
        "by_status": {status: 0 for status in statuses} | {"QUEUED": 3, "FAILED": 1},
        "by_kind": {"echo": 3, "fail": 1},
        "by_status_and_kind": [
            {"status": "QUEUED", "kind": "echo", "count": 3},
            {"status": "FAILED", "kind": "fail", "count": 1},
        ],
        "oldest_queued_age_seconds": 12.345,
        "outbox_backlog": 2,
    }
    asked = serving(lambda request: httpx.Response(200, json=answer))
    result = run("stats")
    assert result.exit_code == 0, result.output
    assert asked == ["/v1/stats"]
    lines = [line.split() for line in result.output.splitlines()]
    assert lines[0] == ["kind", *statuses]
    assert lines[1:4] == [["echo", "3"], ["fail", "1"], ["all", "0", "3", "0", "0", "1", "0"]]
    assert "oldest queued: 12.3 s waiting" in result.output
    assert "outbox backlog: 2 messages" in result.output
    assert ["queue", *statuses] not in lines  # one queue: its counts are the ones above
    assert json.loads(run("stats", "--json").output) == answer


def test_stats_shows_the_counts_of_each_queue_where_there_are_several(serving: Any) -> None:
    statuses = ["SCHEDULED", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
    answer = {
        "by_status": {status: 0 for status in statuses} | {"QUEUED": 3},
        "by_kind": {"echo": 3},
        "by_status_and_kind": [{"status": "QUEUED", "kind": "echo", "count": 3}],
        "by_queue": {
            "default": {status: 0 for status in statuses} | {"QUEUED": 1},
            "images": {status: 0 for status in statuses} | {"QUEUED": 2},
        },
        "oldest_queued_age_seconds": 12.0,
        "oldest_queued_age_seconds_by_queue": {"default": 1.0, "images": 12.0},
        "outbox_backlog": 0,
    }
    serving(lambda request: httpx.Response(200, json=answer))
    result = run("stats")
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert lines[3:6] == [
        ["queue", *statuses, "oldest", "wait"],
        ["default", "1", "1.0", "s"],
        ["images", "2", "12.0", "s"],
    ]


def test_list_asks_for_the_queue_given_and_shows_queues_where_a_task_is_elsewhere(
    serving: Any,
) -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url.params))
        queue = request.url.params.get("queue", "default")
        task = {
            "id": TASK_ID,
            "kind": "echo",
            "queue": queue,
            "status": "QUEUED",
            "attempts": 0,
            "max_attempts": 3,
            "created_at": "2026-12-07T10:00:00Z",
            "progress": None,
        }
        return httpx.Response(200, json={"items": [task], "next_cursor": None})

    serving(handler)
    images = run("list", "--queue", "images")
    plain = run("list")
    assert (images.exit_code, plain.exit_code) == (0, 0), images.output + plain.output
    assert asked == ["limit=20&queue=images", "limit=20"]
    assert "queue" in images.output and "images" in images.output
    assert "queue" not in plain.output


def test_cancel_all_asks_until_none_is_left_and_says_how_many(serving: Any) -> None:
    sent: list[Any] = []
    pages = [{"ids": ["a", "b"], "more": True}, {"ids": ["c"], "more": False}]

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=pages[len(sent) - 1])

    asked = serving(handler)
    result = run("cancel-all", "--queue", "images", "--status", "queued", "--yes")
    assert result.exit_code == 0, result.output
    assert asked == ["/v1/tasks/cancel"] * 2
    assert sent == [{"status": ["QUEUED"], "queue": "images"}] * 2
    assert "cancelled 3 tasks" in result.output


def test_retry_all_asks_first_and_changes_nothing_when_told_no(serving: Any) -> None:
    asked = serving(lambda request: httpx.Response(200, json={"ids": [], "more": False}))
    result = CliRunner().invoke(
        app,
        ["retry-all", "--kind", "http", "--status", "failed,cancelled", "--url", "http://x"],
        input="n\n",
    )
    assert result.exit_code == 1
    assert "retry every task that matches (status FAILED or CANCELLED, kind http)?" in (
        result.output
    )
    assert asked == []
    agreed = CliRunner().invoke(
        app, ["retry-all", "--kind", "http", "--url", "http://taskport", "--json"], input="y\n"
    )
    assert agreed.exit_code == 0, agreed.output
    assert asked == ["/v1/tasks/retry"]
    assert json.loads(agreed.output.splitlines()[-1]) == {"ids": [], "count": 0}
