"""The benchmarks' plumbing: databases and virtual hosts of their own, processes started
and stopped, waits with deadlines, resident memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672"
LOGS = ROOT / "bench" / "logs"


class BenchError(RuntimeError):
    pass


def wait_until(condition: Callable[[], object], within: float, what: str) -> None:
    """Polls ``condition`` until it is true; a clear error after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {within:g}s")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# PostgreSQL


def ensure_postgres() -> None:
    if listening(5432):
        return
    versions = sorted(path.name for path in Path("/etc/postgresql").iterdir())
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False,
        capture_output=True,
    )
    wait_until(lambda: listening(5432), 30, "PostgreSQL start")


def sql(statement: str, database: str = "test") -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(f"{POSTGRES}/{database}", timeout=5)
        try:
            return await connection.fetch(statement)
        finally:
            await connection.close()

    return asyncio.run(run())


def scalar(statement: str, database: str) -> int:
    return int(sql(statement, database)[0][0])


@contextlib.contextmanager
def polled_scalar(statement: str, database: str) -> Iterator[Callable[[], int]]:
    """``statement``'s one number, asked again on each call over one connection: a poll
    several times a second costs the database a query, not a new backend each time."""
    with psycopg.connect(f"{POSTGRES}/{database}", autocommit=True) as connection:

        def ask() -> int:
            row = connection.execute(statement).fetchone()
            assert row is not None
            return int(row[0])

        yield ask


def settle(within: float = 30, idle_percent: float = 15) -> None:
    """Lets the machine go quiet before a measurement: PostgreSQL writes out what the last
    scenario left in its buffers (a checkpoint), then CPU use falls under ``idle_percent``
    for a second (or ``within`` seconds pass). Each scenario, Taskport's and the
    baselines' alike, then starts on an idle machine instead of inheriting the last one's
    background work."""
    ensure_postgres()
    sql("CHECKPOINT")
    deadline = time.monotonic() + within
    while psutil.cpu_percent(interval=1) > idle_percent and time.monotonic() < deadline:
        pass


@contextlib.contextmanager
def postgres_database(purpose: str) -> Iterator[tuple[str, str]]:
    """A new database, dropped at the end: its name and its URL."""
    ensure_postgres()
    name = f"bench_{purpose}_{secrets.token_hex(4)}"
    sql(f'CREATE DATABASE "{name}"')
    try:
        yield name, f"{POSTGRES}/{name}"
    finally:
        sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# RabbitMQ


def rabbitmqctl(*args: str) -> None:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")


def ensure_rabbitmq() -> None:
    if listening(5672):
        return
    if shutil.which("rabbitmqctl") is None:
        raise BenchError("RabbitMQ is not installed and nothing listens on 127.0.0.1:5672")
    if subprocess.run(["rabbitmqctl", "start_app"], capture_output=True).returncode != 0:
        subprocess.run(["rabbitmq-server", "-detached"], check=False, timeout=60)
    wait_until(lambda: listening(5672), 60, "RabbitMQ start")


@contextlib.contextmanager
def rabbitmq_vhost(purpose: str) -> Iterator[str]:
    """A new virtual host, deleted at the end: its AMQP URL."""
    ensure_rabbitmq()
    vhost = f"bench-{purpose}-{secrets.token_hex(4)}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"{RABBITMQ}/{vhost}"
    finally:
        with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
            rabbitmqctl("delete_vhost", vhost)


# Processes


def executable(name: str) -> str:
    """A command installed in the benchmark's own environment."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise BenchError(f"{name} is not installed next to {sys.executable}")
    return str(path)


class Process:
    """A process of the benchmark, its output in bench/logs/NAME.log, stopped with SIGTERM
    (then SIGKILL) when the run leaves it."""

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log = LOGS / f"{name}.log"
        environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        # Measured as deployed: with compiled bytecode, not compiling every module at start.
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        with self.log.open("wb") as log:
            self.popen = subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
            )
        self.peak_rss = 0
        self._tree: list[psutil.Process] = []
        self._tree_listed_at = -1.0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def rss_bytes(self) -> int:
        """Resident memory of the process and its children (a prefork pool counts whole).
        The children are listed again once a second: listing them reads every process of
        the machine, which sampled ten times a second would load the run it measures."""
        try:
            if time.monotonic() - self._tree_listed_at > 1:
                root = psutil.Process(self.pid)
                self._tree = [root, *root.children(recursive=True)]
                self._tree_listed_at = time.monotonic()
            total = self._tree[0].memory_info().rss
        except psutil.Error:
            return 0
        for child in self._tree[1:]:
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        self.peak_rss = max(self.peak_rss, total)
        return total

    def check(self) -> None:
        if not self.alive():
            tail = self.log.read_text(errors="replace")[-2000:]
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def stop(self, grace: float = 15) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


@contextlib.contextmanager
def processes() -> Iterator[list[Process]]:
    """Every process appended to the list is stopped when the block ends, last first."""
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            process.stop()


def wait_http(process: Process, url: str, within: float = 60) -> None:
    """Waits for ``url`` to answer 2xx while ``process`` runs."""

    def answers() -> bool:
        process.check()
        try:
            return httpx.get(url, timeout=1).is_success
        except httpx.HTTPError:
            return False

    wait_until(answers, within, f"{process.name} at {url}")


def run_json(command: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> dict:
    """Runs a load generator (a process of its own) and returns the JSON it prints last."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command[:4])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_command(command: list[str], env: dict[str, str]) -> None:
    """Runs a one-off command of the benchmark (a migration, a schema) to its end."""
    done = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
