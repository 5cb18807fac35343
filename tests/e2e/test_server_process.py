"""The real thing: `taskport serve` as its own process, talked to over TCP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.polling import eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def taskport(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = taskport(
        "serve",
        "--port",
        str(port),
        env={"TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}"},
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        finally:
            process.kill()
        # uvicorn shuts down cleanly, then re-raises the signal it caught.
        assert process.returncode in (0, -signal.SIGTERM)
        assert b"Application shutdown complete" in output


async def test_the_server_runs_a_task_over_tcp(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:

        async def up() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, within=30)
        created = await client.post("/v1/tasks", json={"kind": "echo", "payload": {"over": "tcp"}})
        assert created.status_code == 201
        task_id = created.json()["id"]

        async def succeeded() -> bool:
            task = (await client.get(f"/v1/tasks/{task_id}")).json()
            return task["status"] == "SUCCEEDED" and task["result"] == {"over": "tcp"}

        await eventually(succeeded)


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
