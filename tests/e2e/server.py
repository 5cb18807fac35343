"""``taskport serve`` and ``taskport worker`` subprocesses for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.polling import eventually

STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """``taskport serve`` on a free port, with the given settings, logging to ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self._launch()
        await eventually(self._ready, within=STARTUP_SECONDS, interval=0.1)

    def _launch(self) -> None:
        self._process = taskport(
            "serve", "--host", "127.0.0.1", "--port", str(self.port), env=self._env, log=self.log
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as in a crash."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()

    def terminate(self) -> None:
        """SIGTERM, as a process manager stops a server; returns at once."""
        assert self._process is not None
        self._process.terminate()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def returncode(self) -> int | None:
        assert self._process is not None
        return self._process.poll()

    async def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"taskport serve exited:\n{self.log.read_text()}")
        try:
            async with httpx.AsyncClient(base_url=self.base_url) as client:
                return (await client.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False


@contextmanager
def serving_embedded(folder: Path, env: Mapping[str, str]) -> Iterator[ServerProcess]:
    """``taskport serve`` on the embedded default with its database and log in ``folder``,
    ``env`` over its settings, ready; stopped on the way out. For a module's fixture, which
    runs outside the tests' event loop."""
    server = ServerProcess(
        {"TASKPORT_STORAGE_URL": f"sqlite:///{folder}/taskport.db", **env}, folder / "serve.log"
    )
    asyncio.run(server.start())
    try:
        yield server
    finally:
        server.stop()


def taskport(
    *arguments: str, env: Mapping[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """A ``taskport`` command in a subprocess, with ``env`` over this process's environment;
    its output appended to ``log``, or else left in a pipe for the caller."""
    command = [sys.executable, "-c", "from entrypoints.cli import main; main()", *arguments]
    environment = {**os.environ, **(env or {})}
    if log is None:
        return subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    with log.open("ab") as output:
        return subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)


class WorkerProcess:
    """``taskport worker`` with the given settings, logging to ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        self._process = taskport("worker", env=self._env, log=self.log)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as in a crash."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()

    def terminate(self) -> None:
        """SIGTERM: a graceful stop; returns at once."""
        assert self._process is not None
        self._process.terminate()

    def returncode(self) -> int | None:
        assert self._process is not None
        return self._process.poll()

    def stop(self) -> None:
        if self.running():
            self.terminate()
            try:
                assert self._process is not None
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
