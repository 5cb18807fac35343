"""The systems under test, each started in processes of its own on 127.0.0.1: Taskport
(API and workers on a given storage and broker) and the baselines."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.infra import (
    BenchError,
    Process,
    executable,
    free_port,
    processes,
    run_command,
    run_json,
    wait_http,
    wait_until,
)

FINISHED = ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclass
class Taskport:
    """A Taskport API (``serve``) and its workers on one storage and broker."""

    name: str
    storage_url: str
    broker_url: str
    running: list[Process]
    env: dict[str, str] = field(default_factory=dict)
    workers: list[Process] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    """Kept open for the polls: a new client per poll costs the run a TLS setup each time."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        return {
            "TASKPORT_STORAGE_URL": self.storage_url,
            "TASKPORT_BROKER_URL": self.broker_url,
            "TASKPORT_HANDLER_MODULES": "bench.kinds",
            "TASKPORT_METRICS_PORT": "0",
            # Every system logs warnings and errors only, as the baselines are run
            # (Celery --loglevel WARNING, uvicorn --log-level warning --no-access-log).
            "TASKPORT_LOG_LEVEL": "WARNING",
            **self.env,
        }

    def migrate(self) -> None:
        if self.storage_url.startswith("postgresql"):
            run_command([executable("taskport"), "db", "upgrade"], self.environment())

    def serve(self) -> Process:
        api = Process(
            f"{self.name}-api",
            [executable("taskport"), "serve", "--port", str(self.port)],
            self.environment(),
        )
        self.running.append(api)
        wait_http(api, f"{self.url}/readyz")
        return api

    def start_workers(self, count: int) -> list[Process]:
        started = []
        for index in range(count):
            worker = Process(
                f"{self.name}-worker-{index + 1}",
                [executable("taskport"), "worker"],
                self.environment(),
            )
            self.running.append(worker)
            started.append(worker)
        self.workers.extend(started)
        wait_until(lambda: self._alive_workers() >= len(self.workers), 60, "workers register")
        return started

    def _alive_workers(self) -> int:
        for worker in self.workers:
            worker.check()
        answer = self.client.get(f"{self.url}/v1/workers", timeout=5).json()
        return sum(1 for item in answer["items"] if item["status"] == "alive")

    def stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.client.get(f"{self.url}/v1/stats").json()
        return answer

    def counts(self) -> dict[str, int]:
        by_status = self.stats()["by_status"]
        return {str(status): int(count) for status, count in by_status.items()}

    def wait_finished(self, total: int, within: float, sample: Sequence[Process] = ()) -> float:
        """Polls the stats until ``total`` tasks finished; the time it saw them finished.
        Samples the memory of ``sample`` meanwhile."""
        return poll_count(lambda: sum(self.counts()[s] for s in FINISHED), total, within, sample)


def poll_count(
    count: Callable[[], int],
    total: int,
    within: float,
    sample: Sequence[Process] = (),
    every: float = 0.1,
) -> float:
    """Polls ``count()`` until it reaches ``total``; the wall-clock time it did."""
    deadline = time.monotonic() + within
    while True:
        for process in sample:
            process.check()
            process.rss_bytes()
        done = count()
        if done >= total:
            return time.time()
        if time.monotonic() > deadline:
            raise BenchError(f"only {done} of {total} tasks finished within {within:g}s")
        time.sleep(every)


@contextlib.contextmanager
def taskport(name: str, storage_url: str, broker_url: str, **env: str) -> Iterator[Taskport]:
    with processes() as running:
        system = Taskport(name, storage_url, broker_url, running, env)
        try:
            system.migrate()
            yield system
        finally:
            system.client.close()


def uvicorn_app(name: str, app: str, env: dict[str, str], running: list[Process]) -> str:
    """A baseline app under uvicorn (uvloop and httptools, no access log), as Taskport runs."""
    port = free_port()
    process = Process(
        name,
        [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--no-access-log",
         "--log-level", "warning"],
        env,
    )  # fmt: skip
    running.append(process)
    wait_http(process, f"http://127.0.0.1:{port}/openapi.json")
    return f"http://127.0.0.1:{port}"


def submit_load(url: str, count: int, warmup: int, connections: int = 32) -> dict:
    """The load generator's figures for ``count`` POSTs of a small echo task to ``url``."""
    figures = run_json(
        [sys.executable, "-m", "bench.loadgen", "requests", url, "--count", str(count),
         "--warmup", str(warmup), "--connections", str(connections)]
    )  # fmt: skip
    if figures["errors"]:
        raise BenchError(f"{figures['errors']} submits to {url} failed: {figures['unexpected']}")
    return figures


RESULT_COUNTS = {
    "celery": "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'",
    "dramatiq": "SELECT count(*) FROM dramatiq_results",
}
"""How many results each baseline has recorded."""
