"""`taskport submit | get | list | cancel | retry | workers` against a real server process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from typer.testing import CliRunner

from entrypoints.cli import app
from tests.e2e.server import free_port, taskport

KEY = "cli-test-key"


def wait_until_ready(url: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready within {within} seconds")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    database = tmp_path_factory.mktemp("cli") / "taskport.db"
    process = taskport(
        "serve",
        "--port",
        str(port),
        env={
            "TASKPORT_STORAGE_URL": f"sqlite:///{database}",
            "TASKPORT_API_KEYS": f"alice:{KEY}",
            "TASKPORT_RETRY_BASE_SECONDS": "0.05",
            "TASKPORT_WORKER_QUEUES": "default:16",
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        finally:
            process.kill()


def cli(*args: str, url: str, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    """The command as a person runs it: its own process, settings from the environment."""
    env = {**os.environ, "TASKPORT_URL": url}
    if key is not None:
        env["TASKPORT_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_submit_and_wait_prints_the_result_and_exits_0(server: str) -> None:
    done = cli("submit", "echo", "--payload", '{"hello": ["world", 1]}', "--wait", url=server)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"hello": ["world", 1]}
    assert "SUCCEEDED after 1 attempt" in done.stderr


def test_a_task_that_fails_exits_non_zero_with_its_error(server: str) -> None:
    done = cli(
        "submit", "fail", "-p", '{"message": "boom"}', "--max-attempts", "2", "--wait", url=server
    )
    assert done.returncode == 1
    assert "FAILED after 2 attempts" in done.stderr
    assert "RuntimeError: boom" in done.stderr
    assert done.stdout == ""


def test_a_callback_url_goes_with_the_task(server: str) -> None:
    """The server allows no outbound host: the URL reached it, and was refused."""
    done = cli("submit", "echo", "--callback-url", "https://hooks.example.com/t", url=server)
    assert done.returncode == 1
    assert "callback_url: " in done.stderr
    assert "calls to hooks.example.com are not allowed" in done.stderr


def test_a_wrong_api_key_prints_the_401_problem(server: str) -> None:
    done = cli("list", url=server, key="not-the-key")
    assert done.returncode == 1
    assert done.stderr.strip() == "Error 401 Unauthenticated: unknown API key"
    assert "Traceback" not in done.stderr


def test_submit_takes_its_start_and_expiry_as_times_or_delays_from_now(server: str) -> None:
    before = datetime.now(UTC)
    done = cli("submit", "echo", "--run-at", "2h", "--expires-at", "1d", "--json", url=server)
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)
    run_at = datetime.fromisoformat(task["run_at"])
    expires_at = datetime.fromisoformat(task["expires_at"])
    after = datetime.now(UTC)
    assert task["status"] == "SCHEDULED"
    assert before + timedelta(hours=2) <= run_at <= after + timedelta(hours=2)
    assert before + timedelta(days=1) <= expires_at <= after + timedelta(days=1)

    at = "2031-05-06T07:08:09+02:00"
    done = cli("submit", "echo", "--run-at", at, "--json", url=server)
    assert done.returncode == 0, done.stderr
    assert datetime.fromisoformat(json.loads(done.stdout)["run_at"]) == datetime.fromisoformat(at)

    # An expiry before the start is the API's refusal, shown as its problem.
    done = cli("submit", "echo", "--run-at", "2h", "--expires-at", "1h", url=server)
    assert done.returncode == 1
    assert done.stderr.startswith("Error 422"), done.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tomorrow", "neither a time"),
        ("10 minutes", "neither a time"),
        ("-5m", "neither a time"),
        ("2030-01-01T09:00:00", "needs its offset"),
        ("999999999d", "past any date"),
    ],
)
def test_a_time_that_is_not_one_is_a_usage_error(value: str, message: str) -> None:
    done = cli("submit", "echo", "--run-at", value, url=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("payload", ["not json", '{"ratio": NaN}', "[Infinity]"])
def test_a_payload_that_is_not_json_is_a_usage_error(payload: str) -> None:
    done = cli("submit", "echo", "-p", payload, url=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 2
    assert "Invalid value for --payload: not JSON" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_server_is_one_line_and_exit_3() -> None:
    done = cli("get", "01a207cd-be7b-757e-8750-68195414f15e", url=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 3
    assert done.stderr.startswith("taskport: cannot reach http://127.0.0.1:")
    assert len(done.stderr.strip().splitlines()) == 1


def test_get_list_cancel_retry_delete_and_workers(server: str) -> None:
    runner = CliRunner()
    common = ["--url", server, "--api-key", KEY]

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, [*args, *common])
        return result.exit_code, result.output

    code, output = run("submit", "sleep", "-p", '{"seconds": 60}', "--json")
    assert code == 0
    task_id = json.loads(output)["id"]

    def cancelled_within_10_seconds() -> None:
        deadline = time.monotonic() + 10
        while json.loads(run("get", task_id, "--json")[1])["status"] != "CANCELLED":
            assert time.monotonic() < deadline, "the task was not cancelled within 10 seconds"
            time.sleep(0.05)

    code, output = run("get", task_id)
    assert code == 0 and task_id in output and "sleep" in output

    code, output = run("list", "--kind", "sleep", "--limit", "5", "--json")
    assert code == 0 and task_id in [task["id"] for task in json.loads(output)["items"]]
    code, output = run("list", "--schedule", str(uuid.uuid4()))
    assert (code, output.strip()) == (0, "no tasks")  # a schedule that submitted none
    for statuses in (["--status", "queued,running"], ["--status", "RUNNING", "--status", "QUEUED"]):
        code, output = run("list", *statuses, "--json")
        assert code == 0 and task_id in [task["id"] for task in json.loads(output)["items"]]
    code, output = run("list", "--status", "failed,cancelled", "--json")
    assert code == 0 and task_id not in [task["id"] for task in json.loads(output)["items"]]

    code, output = run("cancel", task_id, "--json")
    assert code == 0
    cancelled = json.loads(output)
    assert cancelled["status"] == "CANCELLED" or cancelled["cancel_requested"]

    cancelled_within_10_seconds()

    code, output = run("retry", task_id, "--json")
    assert code == 0 and json.loads(output)["status"] == "QUEUED"
    code, output = run("delete", task_id)
    assert code == 1 and "cancel it first" in output, output
    assert run("cancel", task_id)[0] == 0
    cancelled_within_10_seconds()
    code, output = run("delete", task_id)
    assert (code, output.strip()) == (0, f"deleted task {task_id}")
    code, output = run("get", task_id)
    assert code == 1 and "Task not found" in output, output

    code, output = run("retry", "not-a-uuid")
    assert code == 2 and "Invalid value for 'ID'" in output

    code, output = run("workers")
    assert code == 0 and "alive" in output, output
    assert "default:16" in output.split(), output  # the limit of the queue it takes

    assert run("submit", "predict", "-p", '{"features": {}}', "--run-at", "1h")[0] == 0
    code, output = run("stats")
    assert code == 0 and "oldest queued:" in output, output
    assert any(line.split()[:2] == ["predict", "1"] for line in output.splitlines()), output
