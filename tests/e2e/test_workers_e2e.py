"""Real processes: ``taskport serve`` on a fresh PostgreSQL database and RabbitMQ (a vhost of
this run's own), with ``taskport worker`` processes that are killed, stopped and replaced.

The restart test stops RabbitMQ for the whole machine: set RABBITMQ_SKIP_RESTART_TESTS=1
to skip it.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess, WorkerProcess
from tests.polling import eventually
from tests.rabbitmq import broker_url, ensure_running, rabbitmqctl

pytestmark = pytest.mark.e2e

HEARTBEAT_SECONDS = 0.2
LOST_AFTER_SECONDS = 1.0
RETRY_BASE_SECONDS = 0.2
GRACE_SECONDS = 1.0
CONCURRENCY = 8
LONG_SLEEP = 2.0
SUCCEEDED = re.compile(r"TaskSucceeded task=(\S+)")


class Cluster:
    """The API and the workers of one test, sharing one database and one broker."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.api = ServerProcess(env, logs / "api.log")
        self.workers: list[WorkerProcess] = []
        self.client = httpx.AsyncClient(base_url=self.api.base_url, timeout=30)

    async def start(self) -> None:
        await self.api.start()

    def worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.logs / f"worker-{len(self.workers)}.log")
        worker.start()
        self.workers.append(worker)
        return worker

    async def workers_by_pid(self) -> dict[int, dict[str, Any]]:
        response = await self.client.get("/v1/workers")
        assert response.status_code == 200, response.text
        return {worker["pid"]: worker for worker in response.json()["items"]}

    async def registered(self, *workers: WorkerProcess) -> None:
        async def alive() -> bool:
            for worker in workers:
                assert worker.running(), worker.log.read_text()
            listed = await self.workers_by_pid()
            return all(listed.get(w.pid, {}).get("status") == "alive" for w in workers)

        await eventually(alive, within=30, interval=0.1)

    async def submit(self, request: dict[str, Any]) -> str:
        response = await self.client.post("/v1/tasks", json=request)
        assert response.status_code == 201, response.text
        task_id: str = response.json()["id"]
        return task_id

    async def submit_all(self, requests: list[dict[str, Any]]) -> list[str]:
        slots = asyncio.Semaphore(16)

        async def one(request: dict[str, Any]) -> str:
            async with slots:
                return await self.submit(request)

        return list(await asyncio.gather(*map(one, requests)))

    async def task(self, task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = (await self.client.get(f"/v1/tasks/{task_id}")).json()
        return task

    async def wait_for(self, task_id: str, status: str, within: float = 20) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def reached() -> bool:
            seen.update(await self.task(task_id))
            return seen["status"] == status

        await eventually(reached, within=within, interval=0.02)
        return seen

    async def all_tasks(self) -> dict[str, dict[str, Any]]:
        response = await self.client.get("/v1/tasks", params={"limit": 1000})
        return {task["id"]: task for task in response.json()["items"]}

    async def all_succeeded(self, ids: list[str], within: float) -> dict[str, dict[str, Any]]:
        tasks: dict[str, dict[str, Any]] = {}

        async def done() -> bool:
            tasks.update(await self.all_tasks())
            return all(tasks.get(task_id, {}).get("status") == "SUCCEEDED" for task_id in ids)

        await eventually(done, within=within, interval=0.2)
        return tasks

    def worker_logs(self) -> str:
        return "".join(worker.log.read_text() for worker in self.workers)

    async def close(self) -> None:
        await self.client.aclose()
        for worker in self.workers:
            worker.stop()
        self.api.stop()


@pytest.fixture
def storage_url(request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database by default; MongoDB (with RabbitMQ) when a test asks."""
    kind = getattr(request, "param", "postgresql")
    url: str = request.getfixturevalue("mongo_url" if kind == "mongo" else "empty_postgres_url")
    return url


@pytest.fixture
async def cluster(storage_url: str, rabbitmq_vhost: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(cluster_env(storage_url, rabbitmq_vhost), tmp_path)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.close()


def cluster_env(storage_url: str, rabbitmq_vhost: str) -> dict[str, str]:
    return {
        "TASKPORT_STORAGE_URL": storage_url,
        "TASKPORT_BROKER_URL": broker_url(rabbitmq_vhost),
        "TASKPORT_MIGRATE_ON_START": "true",
        "TASKPORT_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "TASKPORT_WORKER_LOST_AFTER_SECONDS": str(LOST_AFTER_SECONDS),
        "TASKPORT_RECOVERY_INTERVAL_SECONDS": "0.3",
        "TASKPORT_SWEEP_INTERVAL_SECONDS": "0.1",
        "TASKPORT_RETRY_BASE_SECONDS": str(RETRY_BASE_SECONDS),
        "TASKPORT_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "TASKPORT_WORKER_CONCURRENCY": str(CONCURRENCY),
        "TASKPORT_LOG_LEVEL": "INFO",
    }


def short_task(n: int) -> dict[str, Any]:
    """Echoes and 0.05 s sleeps; every twentieth sleeps two seconds, for a worker to be
    killed while it runs one."""
    if n % 2:
        return {"kind": "echo", "payload": {"n": n}}
    return {"kind": "sleep", "payload": {"seconds": LONG_SLEEP if n % 20 == 0 else 0.05}}


@pytest.mark.parametrize(
    ("storage_url", "count"), [("postgresql", 1000), ("mongo", 300)], indirect=["storage_url"]
)
async def test_a_killed_worker_loses_no_task_and_no_result_is_written_twice(
    cluster: Cluster, count: int
) -> None:
    first, second = cluster.worker(), cluster.worker()
    await cluster.registered(first, second)
    requests = [short_task(n) for n in range(count)]
    ids = await cluster.submit_all(requests)

    first_id = (await cluster.workers_by_pid())[first.pid]["id"]
    held: list[str] = []

    async def holds_a_long_task() -> bool:
        """The first worker runs a long sleep that began less than a second ago."""
        recent = datetime.now(UTC) - timedelta(seconds=LONG_SLEEP / 2)
        held[:] = [
            task["id"]
            for task in (await cluster.all_tasks()).values()
            if task["status"] == "RUNNING"
            and task["worker_id"] == first_id
            and task["payload"].get("seconds") == LONG_SLEEP
            and datetime.fromisoformat(task["started_at"]) > recent
        ]
        return bool(held)

    await eventually(holds_a_long_task, within=30, interval=0.05)
    first.kill()
    finished_before_kill = sum(
        task["status"] == "SUCCEEDED" for task in (await cluster.all_tasks()).values()
    )
    replacement = cluster.worker()
    tasks = await cluster.all_succeeded(ids, within=90)

    assert finished_before_kill < len(ids), "the worker was killed after the run, not during it"
    for task_id, request in zip(ids, requests, strict=True):
        payload = request["payload"]
        expected = payload if request["kind"] == "echo" else {"slept": payload["seconds"]}
        assert tasks[task_id]["result"] == expected
    succeeded = Counter(SUCCEEDED.findall(cluster.worker_logs()))
    assert set(succeeded) <= set(ids)
    assert max(succeeded.values()) == 1, "a result was recorded twice"
    # The kill may land between a commit and its log line: at most one per slot it had.
    assert len(ids) - len(succeeded) <= CONCURRENCY
    assert {task["attempts"] for task in tasks.values()} <= {1, 2}
    # The attempts the killed worker held were taken back (their 330 s leases had not ended).
    assert all(tasks[task_id]["attempts"] == 2 for task_id in held)

    await cluster.registered(second, replacement)  # a start takes seconds on a busy machine

    async def killed_shown_lost() -> bool:
        listed = await cluster.workers_by_pid()
        return listed.get(first.pid, {}).get("status") == "lost"

    await eventually(killed_shown_lost, within=10, interval=0.1)


def logged_at(logs: str, event: str, task_id: str) -> list[datetime]:
    """When the workers logged ``event`` of the task, in order."""
    pattern = re.compile(rf"^(\S+ \S+) INFO taskport\.events {event} task={task_id}", re.M)
    return sorted(
        datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp in pattern.findall(logs)
    )


async def test_a_failing_task_gets_three_attempts_spaced_by_its_backoff(
    cluster: Cluster,
) -> None:
    await cluster.registered(cluster.worker(), cluster.worker())
    began = time.monotonic()
    task_id = await cluster.submit(
        {"kind": "fail", "payload": {"message": "no luck"}, "max_attempts": 3}
    )
    failed = await cluster.wait_for(task_id, "FAILED")
    elapsed = time.monotonic() - began

    assert failed["attempts"] == 3
    assert failed["error"]["message"] == "no luck"
    backoffs = [RETRY_BASE_SECONDS, 2 * RETRY_BASE_SECONDS]
    assert elapsed >= sum(backoffs)
    starts = logged_at(cluster.worker_logs(), "TaskStarted", task_id)
    assert len(starts) == 3
    for before, after, backoff in zip(starts, starts[1:], backoffs, strict=False):
        # Log times have millisecond precision.
        assert (after - before).total_seconds() >= backoff - 0.001


async def test_cancel_reaches_a_running_task_within_a_second(cluster: Cluster) -> None:
    await cluster.registered(cluster.worker())
    task_id = await cluster.submit(
        {"kind": "sleep", "payload": {"seconds": 30}, "timeout_seconds": 60}
    )
    await cluster.wait_for(task_id, "RUNNING")
    began = time.monotonic()
    response = await cluster.client.post(f"/v1/tasks/{task_id}/cancel")
    assert response.status_code == 200, response.text
    await cluster.wait_for(task_id, "CANCELLED", within=5)
    assert time.monotonic() - began <= 1.0


async def test_sigterm_hands_a_running_task_back_to_another_worker(cluster: Cluster) -> None:
    workers = [cluster.worker(), cluster.worker()]
    await cluster.registered(*workers)
    task_id = await cluster.submit(
        {"kind": "sleep", "payload": {"seconds": 4}, "timeout_seconds": 60}
    )
    await cluster.wait_for(task_id, "RUNNING")
    holding: list[WorkerProcess] = []

    async def found_holder() -> bool:
        listed = await cluster.workers_by_pid()
        holding[:] = [w for w in workers if listed[w.pid]["running"] > 0]
        return len(holding) == 1

    await eventually(found_holder, within=5, interval=0.02)
    (stopping,) = holding
    (other,) = set(workers) - {stopping}
    terminated_at = datetime.now()  # local time, as in the log lines
    stopping.terminate()
    await eventually(lambda: not stopping.running(), within=15, interval=0.02)

    assert stopping.returncode() == 0, stopping.log.read_text()
    handed_back = logged_at(stopping.log.read_text(), "TaskQueued", task_id)
    assert len(handed_back) == 1, "not handed back"
    # At the end of the grace period, long before the task would have ended. (The exit
    # itself, closing connections, is bounded by the wait above.)
    assert (handed_back[0] - terminated_at).total_seconds() < GRACE_SECONDS + 1.0
    assert stopping.pid not in await cluster.workers_by_pid()
    done = await cluster.wait_for(task_id, "SUCCEEDED", within=30)
    assert done["attempts"] == 1, "the attempt cut short was counted"
    # The worker logs the success just after its commit, which the API may show first.
    await eventually(lambda: SUCCEEDED.findall(other.log.read_text()) == [task_id], within=5)


@pytest.fixture
async def restarts_rabbitmq() -> AsyncIterator[None]:
    """Makes sure RabbitMQ is running again at the end, whatever the test did to it."""
    try:
        yield
    finally:
        await asyncio.to_thread(ensure_running)


async def rabbitmq(command: str) -> None:
    done = await asyncio.to_thread(rabbitmqctl, command)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(
    bool(os.environ.get("RABBITMQ_SKIP_RESTART_TESTS")),
    reason="RABBITMQ_SKIP_RESTART_TESTS is set",
)
async def test_tasks_submitted_while_rabbitmq_restarts_are_all_accepted_and_run(
    cluster: Cluster, restarts_rabbitmq: None
) -> None:
    await cluster.registered(cluster.worker(), cluster.worker())
    ids: list[str] = []
    statuses: list[int] = []
    done = asyncio.Event()

    async def keep_submitting() -> None:
        while not done.is_set():
            response = await cluster.client.post(
                "/v1/tasks", json={"kind": "echo", "payload": {"n": len(statuses)}}
            )
            statuses.append(response.status_code)
            if response.status_code == 201:
                ids.append(response.json()["id"])
            await asyncio.sleep(0.02)  # a steady trickle of clients

    def submitted(at_least: int) -> Any:
        return lambda: len(statuses) >= at_least

    submitter = asyncio.create_task(keep_submitting())
    try:
        await eventually(submitted(10), within=10)
        await rabbitmq("stop_app")
        stopped_at = len(statuses)
        await eventually(submitted(stopped_at + 10), within=10)
        await rabbitmq("start_app")
        restarted_at = len(statuses)
        await eventually(submitted(restarted_at + 10), within=10)
    finally:
        done.set()
        await submitter

    assert statuses == [201] * len(statuses)
    tasks = await cluster.all_succeeded(ids, within=60)
    assert all(tasks[task_id]["result"] is not None for task_id in ids)


STUCK_KIND = """
import time

from adapters.handlers.sdk import task_kind


@task_kind("stuck")
def stuck(payload, context):
    time.sleep(payload["seconds"])  # deaf to context.cancelled
    return "unstuck"
"""


async def test_sigterm_stops_a_worker_whose_handler_outlived_its_timeout(
    storage_url: str, rabbitmq_vhost: str, tmp_path: Path
) -> None:
    """A thread cannot be stopped: the handler runs on after its attempt timed out, and
    must not keep the worker from exiting once its grace period is over."""
    (tmp_path / "stuck_kinds.py").write_text(STUCK_KIND)
    env = {
        **cluster_env(storage_url, rabbitmq_vhost),
        "TASKPORT_HANDLER_MODULES": "stuck_kinds",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
    }
    cluster = Cluster(env, tmp_path)
    try:
        await cluster.start()
        worker = cluster.worker()
        await cluster.registered(worker)
        stuck = {"kind": "stuck", "payload": {"seconds": 600}, "timeout_seconds": 0.1}
        task_id = await cluster.submit({**stuck, "max_attempts": 1})
        failed = await cluster.wait_for(task_id, "FAILED")
        assert failed["error"]["type"] == "Timeout"
        worker.terminate()
        await eventually(lambda: worker.returncode() is not None, within=GRACE_SECONDS + 10)
        assert worker.returncode() == 0, worker.log.read_text()
    finally:
        await cluster.close()
