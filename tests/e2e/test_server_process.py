"""The real thing: `taskport serve` as its own process, talked to over TCP."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess, free_port, taskport
from tests.polling import eventually
from tests.pubsub import new_project
from tests.rabbitmq import broker_url


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    process = ServerProcess(
        {"TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}"}, tmp_path / "serve.log"
    )
    await process.start()
    try:
        yield process.base_url
    finally:
        process.stop()
        # uvicorn shuts down cleanly, then re-raises the signal it caught.
        assert process.returncode() in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in process.log.read_text()


async def test_the_server_runs_a_task_over_tcp(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        created = await client.post("/v1/tasks", json={"kind": "echo", "payload": {"over": "tcp"}})
        assert created.status_code == 201
        task_id = created.json()["id"]

        async def succeeded() -> bool:
            task = (await client.get(f"/v1/tasks/{task_id}")).json()
            return task["status"] == "SUCCEEDED" and task["result"] == {"over": "tcp"}

        await eventually(succeeded)


async def test_a_head_over_tcp_has_the_length_of_the_get_and_no_body(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        length = len((await client.get("/v1/kinds")).content)
    url = httpx.URL(server)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(b"HEAD /v1/kinds HTTP/1.1\r\nHost: taskport\r\nConnection: close\r\n\r\n")
    answer = await reader.read()  # until the server closes the connection
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert f"content-length: {length}\r\n".encode() in head.lower() + b"\r\n", head
    assert body == b""


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("serve",), {"TASKPORT_ENVIRONMENT": "production"}, "TASKPORT_SECRET_KEY"),
        (
            ("serve",),
            {"TASKPORT_ENVIRONMENT": "staging", "TASKPORT_SECRET_KEY": "s3cret"},
            "TASKPORT_API_KEYS",
        ),
        (("serve",), {"TASKPORT_STORAGE_URL": "cassandra://db"}, "supported: memory://"),
        (("serve",), {"TASKPORT_API_KEYS": "no-colon"}, "owner:key"),
        (
            ("serve",),
            {"TASKPORT_API_KEYS": f"alice:a-key,{'o' * 201}:o-key"},
            "TASKPORT_API_KEYS: an owner name is at most 200 characters",
        ),
        (("worker",), {}, "in-process queue"),
        (
            ("serve",),
            {"TASKPORT_HANDLER_MODULES": "no_such_kinds_module"},
            "cannot import handler module 'no_such_kinds_module'",
        ),
    ],
)
def test_a_misconfigured_process_refuses_to_start(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    process = taskport(*args, env=env)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 2
    assert message in output.decode()


def test_serve_gives_up_on_a_mongodb_it_cannot_reach_with_one_line() -> None:
    """After its wait for a database still starting (30 s), as it does on PostgreSQL and as
    ``taskport worker`` does: not with the traceback of a failed application start-up."""
    nothing_there = f"mongodb://127.0.0.1:{free_port()}/taskport"
    process = taskport(
        "serve", "--port", str(free_port()), env={"TASKPORT_STORAGE_URL": nothing_there}
    )
    output, _ = process.communicate(timeout=90)
    assert process.returncode == 1
    assert "Traceback" not in output.decode()
    assert output.decode().splitlines()[-1].startswith("taskport: storage is unavailable: ")


async def test_a_stopping_server_hands_back_every_task_it_has_not_finished(
    tmp_path: Path,
) -> None:
    """SIGTERM while several tasks run past the grace period: each one is QUEUED again with
    its attempt not counted, so the next start runs it as attempt 1 of 1, to success."""
    settings = {
        "TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}",
        "TASKPORT_SHUTDOWN_GRACE_SECONDS": "0.5",
    }
    longer_than_the_grace = {"kind": "sleep", "payload": {"seconds": 4}, "max_attempts": 1}
    stopping = ServerProcess(settings, tmp_path / "stopping.log")
    await stopping.start()
    try:
        async with httpx.AsyncClient(base_url=stopping.base_url) as client:
            ids = [
                (await client.post("/v1/tasks", json=longer_than_the_grace)).json()["id"]
                for _ in range(8)
            ]

            await eventually(lambda: all_running(client, ids))
            stopping.terminate()
            await eventually(lambda: stopping.returncode() is not None, within=15)
    finally:
        stopping.stop()
    assert "Application shutdown complete" in stopping.log.read_text()

    again = ServerProcess(settings, tmp_path / "again.log")
    await again.start()
    try:
        async with httpx.AsyncClient(base_url=again.base_url) as client:
            tasks: list[dict[str, Any]] = []

            async def all_finished() -> bool:
                tasks[:] = [(await client.get(f"/v1/tasks/{id_}")).json() for id_ in ids]
                return all(task["status"] in ("SUCCEEDED", "FAILED") for task in tasks)

            await eventually(all_finished, within=30)
    finally:
        again.stop()
    outcomes = [(task["status"], task["attempts"], task["error"]) for task in tasks]
    assert outcomes == [("SUCCEEDED", 1, None)] * len(ids)


async def test_a_stopping_server_hands_back_the_tasks_of_the_pushes_it_cuts(
    tmp_path: Path, pubsub_emulator: Any
) -> None:
    """Pub/Sub pushes still running when the grace period ends: the server cuts them, and
    each task is QUEUED again, its attempt not counted, before the server exits."""
    settings = {
        "TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}",
        "TASKPORT_BROKER_URL": f"pubsub://{new_project()}",
        "TASKPORT_PUBSUB_CREATE": "true",
        "TASKPORT_SHUTDOWN_GRACE_SECONDS": "0.5",
    }
    longer_than_the_grace = {"kind": "sleep", "payload": {"seconds": 60}, "max_attempts": 1}
    stopping = ServerProcess(settings, tmp_path / "stopping.log")
    await stopping.start()
    try:
        async with httpx.AsyncClient(base_url=stopping.base_url, timeout=30) as client:
            ids = [
                (await client.post("/v1/tasks", json=longer_than_the_grace)).json()["id"]
                for _ in range(8)
            ]
            pushes = [
                asyncio.create_task(client.post("/webhook/pubsub", json=push_of(id_)))
                for id_ in ids
            ]

            await eventually(lambda: all_running(client, ids))
            stopping.terminate()
            answers = await asyncio.gather(*pushes)
            await eventually(lambda: stopping.returncode() is not None, within=15)
    finally:
        stopping.stop()
    # Each cut push is answered 503 (Pub/Sub pushes it again) and logged in one line.
    assert [answer.status_code for answer in answers] == [503] * len(ids)
    log = stopping.log.read_text()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
    cut = [line for line in log.splitlines() if "cut by the shutdown" in line]
    assert sorted(id_ for id_ in ids if any(id_ in line for line in cut)) == sorted(ids)
    assert len(cut) == len(ids)

    again = ServerProcess(settings, tmp_path / "again.log")
    await again.start()
    try:
        async with httpx.AsyncClient(base_url=again.base_url) as client:
            tasks = [(await client.get(f"/v1/tasks/{id_}")).json() for id_ in ids]
    finally:
        again.stop()
    assert [(task["status"], task["attempts"]) for task in tasks] == [("QUEUED", 0)] * len(ids)


def push_of(task_id: str) -> dict[str, Any]:
    """The body of a Pub/Sub push of the message that runs ``task_id``."""
    data = base64.b64encode(json.dumps({"task_id": task_id}).encode()).decode()
    return {
        "message": {"data": data, "messageId": task_id, "publishTime": "2026-01-01T00:00:00Z"},
        "subscription": "projects/taskport-local/subscriptions/taskport-tasks-push",
        "deliveryAttempt": 1,
    }


async def test_a_stopping_server_answers_a_waiting_read_at_once(tmp_path: Path) -> None:
    """With the task as it is, before the grace period (here longer than the test's deadline)
    would cut the request."""
    process = ServerProcess(
        {
            "TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}",
            "TASKPORT_SHUTDOWN_GRACE_SECONDS": "60",
        },
        tmp_path / "serve.log",
    )
    await process.start()
    try:
        async with httpx.AsyncClient(base_url=process.base_url, timeout=90) as client:
            later = {"kind": "echo", "payload": 1, "run_at": "2999-01-01T00:00:00Z"}
            task_id = (await client.post("/v1/tasks", json=later)).json()["id"]
            waiting = asyncio.create_task(client.get(f"/v1/tasks/{task_id}?wait=60"))

            async def read_waiting() -> bool:  # this request, and the waiting one
                metrics = (await client.get("/metrics")).text
                return "taskport_http_requests_in_progress 2.0" in metrics

            await eventually(read_waiting)
            process.terminate()
            answer = await asyncio.wait_for(waiting, 15)
            assert answer.status_code == 200
            assert answer.json()["status"] == "SCHEDULED"
            await eventually(lambda: process.returncode() is not None, within=15)
    finally:
        process.stop()
    assert "Application shutdown complete" in process.log.read_text()


@pytest.mark.parametrize("args", [("serve",), ("worker",), ("db", "upgrade")])
@pytest.mark.parametrize(
    ("storage_url", "refusal"),
    [
        ("postgresql://postgres@127.0.0.1:5432/taskport_no_such_db", "does not exist"),
        ("postgresql://taskport_no_such_user@127.0.0.1:5432/test", "does not exist"),
    ],
)
def test_a_database_refusing_the_settings_is_one_line_at_once(
    args: tuple[str, ...], storage_url: str, refusal: str, rabbitmq_vhost: str
) -> None:
    """Not waited for as a database still starting (30 s), and no traceback."""
    env = {"TASKPORT_STORAGE_URL": storage_url, "TASKPORT_BROKER_URL": broker_url(rabbitmq_vhost)}
    process = taskport(*args, env=env)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 1
    lines = output.decode().strip().splitlines()
    assert lines[-1].startswith("taskport: storage is unavailable: ") and refusal in lines[-1]
    assert "Traceback" not in output.decode()


@pytest.mark.parametrize("args", [("serve",), ("worker",)])
def test_a_mongodb_refusing_the_login_is_one_line_at_once(
    args: tuple[str, ...], mongo_refusing_logins: str, rabbitmq_vhost: str
) -> None:
    """A wrong user or password is not waited for as a server still starting (30 s)."""
    env = {
        "TASKPORT_STORAGE_URL": mongo_refusing_logins,
        "TASKPORT_BROKER_URL": broker_url(rabbitmq_vhost),
    }
    process = taskport(*args, env=env)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 1
    lines = output.decode().strip().splitlines()
    assert lines[-1].startswith("taskport: storage is unavailable: ")
    assert "Authentication failed" in lines[-1]
    assert "Traceback" not in output.decode()


async def all_running(client: httpx.AsyncClient, ids: list[str]) -> bool:
    statuses = [(await client.get(f"/v1/tasks/{id_}")).json()["status"] for id_ in ids]
    return statuses == ["RUNNING"] * len(ids)
