"""A MongoDB server for tests: nx-27017 (a MongoDB wire-protocol server on SQLite, from
PyPI) started once per test run on a free port, or the real mongod named by
``TASKPORT_TEST_MONGO_URL``. Each test gets a database of its own."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

REAL_SERVER_URL = os.environ.get("TASKPORT_TEST_MONGO_URL")
"""Read at import: the test run's conftest clears TASKPORT_* afterwards."""
START_DEADLINE_SECONDS = 20


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(url: str) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=300)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def start_nx_27017(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """``nx-27017`` with isolated in-memory databases; returns once it answers ``ping``."""
    executable = Path(sys.executable).with_name("nx-27017")
    server = subprocess.Popen(
        [
            str(executable),
            "--data-dir",
            "memory",
            "-p",
            str(port),
            "--log-file",
            str(workdir / "nx-27017.log"),
            "--pid-file",
            str(workdir / "nx-27017.pid"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while not _answers_ping(f"mongodb://127.0.0.1:{port}"):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"nx-27017 did not answer on port {port}")
        time.sleep(0.1)
    return server


def with_database(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's URL, without a database."""
    if REAL_SERVER_URL:
        yield REAL_SERVER_URL
        return
    port = _free_port()
    server = start_nx_27017(tmp_path_factory.mktemp("nx-27017"), port)
    try:
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def mongo_url(mongo_server: str) -> Iterator[str]:
    """A database of this test's own, dropped afterwards."""
    name = f"taskport_test_{secrets.token_hex(6)}"
    yield with_database(mongo_server, name)
    client: MongoClient[dict[str, object]] = MongoClient(
        mongo_server, serverSelectionTimeoutMS=2000
    )
    try:
        client.drop_database(name)
    except PyMongoError:
        pass
    finally:
        client.close()
