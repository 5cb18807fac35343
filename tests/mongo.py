"""A MongoDB server for tests: nx-27017 (a MongoDB wire-protocol server on SQLite, from
PyPI) started once per test run on a free port, or the real mongod named by
``TASKPORT_TEST_MONGO_URL``. Each test gets a database of its own."""

from __future__ import annotations

import os
import secrets
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import bson
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


OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013


class _RefusingLogins(socketserver.BaseRequestHandler):
    """Speaks just enough of the wire protocol: answers the handshake (``hello``) as a
    standalone server, and every other command (the login) as a server that does not know
    the user or password."""

    def handle(self) -> None:
        while header := self._read(16):
            length, request_id, _, opcode = struct.unpack("<iiii", header)
            body = self._read(length - 16)
            if opcode == OP_QUERY:  # flags, collection name, skip and limit, then the command
                command = bson.decode(body[body.index(b"\0", 4) + 9 :])
                reply = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(self._answer(command))
                self._send(request_id, OP_REPLY, reply)
            elif opcode == OP_MSG:  # flags, section kind 0, the command
                command = bson.decode(body[5:])
                self._send(request_id, OP_MSG, b"\0\0\0\0\0" + bson.encode(self._answer(command)))

    @staticmethod
    def _answer(command: dict[str, Any]) -> dict[str, Any]:
        if next(iter(command)).lower() in ("hello", "ismaster"):
            return {
                "isWritablePrimary": True,
                "ismaster": True,
                "minWireVersion": 0,
                "maxWireVersion": 21,
                "maxBsonObjectSize": 16 * 1024 * 1024,
                "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000,
                "localTime": datetime.now(UTC),
                "ok": 1.0,
            }
        return {
            "ok": 0.0,
            "errmsg": "Authentication failed.",
            "code": 18,
            "codeName": "AuthenticationFailed",
        }

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.request.recv(size - len(data))
            if not chunk:
                return b""
            data += chunk
        return data

    def _send(self, request_id: int, opcode: int, payload: bytes) -> None:
        header = struct.pack("<iiii", 16 + len(payload), 0, request_id, opcode)
        self.request.sendall(header + payload)


@pytest.fixture
def mongo_refusing_logins() -> Iterator[str]:
    """The URL of a MongoDB server, with a user and password it refuses."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _RefusingLogins)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"mongodb://taskport:wrong@127.0.0.1:{server.server_address[1]}/taskport"
    finally:
        server.shutdown()
        server.server_close()
