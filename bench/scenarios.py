"""The scenarios: each starts what it measures, measures, stops it, and returns figures."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from bench.infra import (
    ROOT,
    BenchError,
    Process,
    executable,
    free_port,
    listening,
    polled_scalar,
    postgres_database,
    processes,
    rabbitmq_vhost,
    run_command,
    run_json,
    settle,
    sql,
    wait_until,
)
from bench.report import rows_label
from bench.systems import (
    RESULT_COUNTS,
    Taskport,
    poll_count,
    submit_load,
    taskport,
    uvicorn_app,
)

MB = 1024 * 1024


@dataclass(frozen=True)
class Counts:
    """How much each scenario does: `make bench` and `make bench-quick` differ only here."""

    submits: int
    submit_warmup: int
    e2e_tasks: int
    """Taskport on PostgreSQL + RabbitMQ, and Dramatiq."""
    celery_tasks: int
    sqlite_tasks: int
    mongo_tasks: int
    pubsub_tasks: int
    latency_tasks: int
    list_rows: tuple[int, int]
    backlog: int
    """Tasks queued before the workers start ..."""
    backlog_measured: int
    """... of which the first this many finished give the throughput."""
    rounds: int
    """Runs of the scenarios compared with baselines, taking turns; the median is reported."""
    batch: int = 500


FULL = Counts(
    submits=15_000,
    submit_warmup=1_000,
    e2e_tasks=10_000,
    celery_tasks=3_000,
    sqlite_tasks=3_000,
    mongo_tasks=1_000,
    pubsub_tasks=3_000,
    latency_tasks=300,
    list_rows=(1_000, 1_000_000),
    backlog=100_000,
    backlog_measured=10_000,
    rounds=3,
)
QUICK = Counts(
    submits=2_000,
    submit_warmup=200,
    e2e_tasks=1_500,
    celery_tasks=300,
    sqlite_tasks=500,
    mongo_tasks=200,
    pubsub_tasks=500,
    latency_tasks=50,
    list_rows=(1_000, 100_000),
    backlog=5_000,
    backlog_measured=2_000,
    rounds=1,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# 1. Submit throughput


def submit_throughput(counts: Counts) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with postgres_database("submit") as (_, database_url), rabbitmq_vhost("submit") as amqp:
        with taskport("taskport-submit", database_url, amqp) as system:
            system.serve()
            log("submit: Taskport POST /v1/tasks (PostgreSQL + outbox + RabbitMQ)")
            figures["taskport"] = submit_load(
                f"{system.url}/v1/tasks", counts.submits, counts.submit_warmup
            )
        env = {"BENCH_DATABASE_URL": database_url, "BENCH_BROKER_URL": amqp}
        settle()
        with processes() as running:
            log("submit: FastAPI + one INSERT")
            url = uvicorn_app("fastapi-insert", "bench.baselines.fastapi_insert:app", env, running)
            figures["fastapi_insert"] = submit_load(
                f"{url}/tasks", counts.submits, counts.submit_warmup
            )
        settle()
        with processes() as running:
            log("submit: FastAPI + Celery .delay()")
            url = uvicorn_app("fastapi-celery", "bench.baselines.fastapi_celery:app", env, running)
            figures["fastapi_celery"] = submit_load(
                f"{url}/tasks", counts.submits, counts.submit_warmup
            )
    for name, measured in figures.items():
        log(f"submit: {name}: {measured['rps']:.0f} req/s, p99 {measured['p99_ms']:.1f} ms")
    return figures


# 2. End-to-end throughput (and 4. worker memory)


def _submit_tasks(system: Taskport, count: int, batch: int) -> subprocess.Popen[str]:
    """Starts the submitter: ``count`` echo tasks through the batch endpoint."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", "batches", f"{system.url}/v1/tasks/batch",
         "--count", str(count), "--batch", str(batch), "--connections", "4"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def _submitted(submitter: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = submitter.communicate(timeout=600)
    if submitter.returncode != 0:
        raise BenchError(f"the submitter failed:\n{err[-3000:]}")
    figures = json.loads(out.strip().splitlines()[-1])
    if figures["errors"]:
        raise BenchError(f"{figures['errors']} batches failed: {figures['unexpected']}")
    return figures


def run_taskport_e2e(
    system: Taskport, count: int, batch: int, workers: int = 2, within: float = 600
) -> dict[str, Any]:
    """Serves, starts ``workers`` workers (none: the embedded one), submits ``count`` tasks
    and waits for every result: tasks per second from the first submit to the last result."""
    system.serve()
    started = system.start_workers(workers) if workers else []
    sample = started or system.running
    idle = max(worker.rss_bytes() for worker in sample)
    submitter = _submit_tasks(system, count, batch)
    done_at = system.wait_finished(count, within, sample)
    submitted = _submitted(submitter)
    counts = system.counts()
    if counts["SUCCEEDED"] != count:
        raise BenchError(f"{system.name}: {counts} instead of {count} SUCCEEDED")
    seconds = done_at - submitted["started_at"]
    return {
        "tasks": count,
        "seconds": seconds,
        "tps": count / seconds,
        "submit_tps": submitted["tasks_per_second"],
        "idle_rss_mb": idle / MB,
        "busy_rss_mb": max(worker.peak_rss for worker in sample) / MB,
    }


def e2e_taskport_pg_rabbitmq(counts: Counts) -> dict[str, Any]:
    with (
        postgres_database("e2e") as (_, database_url),
        rabbitmq_vhost("e2e") as amqp,
        taskport("taskport-pg", database_url, amqp) as system,
    ):
        log(f"e2e: Taskport PostgreSQL + RabbitMQ, 2 workers, {counts.e2e_tasks} tasks")
        return run_taskport_e2e(system, counts.e2e_tasks, counts.batch)


def e2e_taskport_sqlite(counts: Counts) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="taskport-bench-") as directory,
        taskport("taskport-sqlite", f"sqlite:///{directory}/taskport.db", "memory://") as s,
    ):
        log(f"e2e: Taskport embedded default (SQLite, in-process), {counts.sqlite_tasks} tasks")
        return run_taskport_e2e(s, counts.sqlite_tasks, counts.batch, workers=0)


def e2e_taskport_mongo(counts: Counts) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="taskport-bench-") as directory:
        port = free_port()
        with processes() as running, rabbitmq_vhost("mongo") as amqp:
            server = Process(
                "nx-27017",
                [executable("nx-27017"), "--data-dir", "memory", "-p", str(port),
                 "--pid-file", f"{directory}/nx.pid"],
            )  # fmt: skip
            running.append(server)
            wait_until(lambda: server.check() or listening(port), 30, "nx-27017 start")
            with taskport("taskport-mongo", f"mongodb://127.0.0.1:{port}/bench", amqp) as s:
                log(f"e2e: Taskport MongoDB (nx-27017) + RabbitMQ, {counts.mongo_tasks} tasks")
                return run_taskport_e2e(s, counts.mongo_tasks, counts.batch)


def e2e_taskport_pubsub(counts: Counts) -> dict[str, Any]:
    port = free_port()
    with processes() as running, postgres_database("pubsub") as (_, database_url):
        emulator = Process(
            "pubsub-emulator", [sys.executable, "-m", "tests.pubsub_emulator", "--port", str(port)]
        )
        running.append(emulator)
        wait_until(lambda: emulator.check() or listening(port), 30, "Pub/Sub emulator start")
        env = {"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}", "TASKPORT_PUBSUB_CREATE": "true"}
        with taskport("taskport-pubsub", database_url, "pubsub://bench", **env) as system:
            log(f"e2e: Taskport PostgreSQL + Pub/Sub (emulator), {counts.pubsub_tasks} tasks")
            return run_taskport_e2e(system, counts.pubsub_tasks, counts.batch)


CELERY_PING = """
import time
from bench.baselines.celery_app import app
deadline = time.monotonic() + 60
while not app.control.ping(timeout=0.5):
    if time.monotonic() > deadline:
        raise SystemExit("the Celery worker did not answer a ping within 60s")
"""


def e2e_celery(counts: Counts) -> dict[str, Any]:
    with postgres_database("celery") as (database, database_url), rabbitmq_vhost("celery") as amqp:
        env = {"BENCH_DATABASE_URL": database_url, "BENCH_BROKER_URL": amqp}
        _prepare("from bench.baselines.celery_app import app; app.backend.ResultSession()", env)
        with processes() as running:
            worker = Process(
                "celery-worker",
                [executable("celery"), "-A", "bench.baselines.celery_app", "worker",
                 "--concurrency", "2", "--pool", "prefork", "--loglevel", "WARNING"],
                env,
            )  # fmt: skip
            running.append(worker)
            _prepare(CELERY_PING, env)
            log(f"e2e: Celery, 2 processes, acks_late, {counts.celery_tasks} tasks")
            return _baseline_e2e("celery", counts.celery_tasks, env, database, worker)


def e2e_dramatiq(counts: Counts) -> dict[str, Any]:
    with postgres_database("dramatiq") as (database, url), rabbitmq_vhost("dramatiq") as amqp:
        env = {"BENCH_DATABASE_URL": url, "BENCH_BROKER_URL": amqp}
        _prepare("from bench.baselines.dramatiq_app import create_schema; create_schema()", env)
        with processes() as running:
            worker = Process(
                "dramatiq-worker",
                [executable("dramatiq"), "bench.baselines.dramatiq_app", "--processes", "2"],
                env,
            )
            running.append(worker)
            _wait_log(worker, "Worker process is ready")
            log(f"e2e: Dramatiq, 2 processes, {counts.e2e_tasks} tasks")
            return _baseline_e2e("dramatiq", counts.e2e_tasks, env, database, worker)


def _prepare(code: str, env: dict[str, str]) -> None:
    run_command([sys.executable, "-c", code], env)


def _wait_log(process: Process, text: str, within: float = 60) -> None:
    wait_until(
        lambda: process.check() or text in process.log.read_text(errors="replace"),
        within,
        f"{process.name} ready",
    )


def _baseline_e2e(
    system: str, count: int, env: dict[str, str], database: str, worker: Process
) -> dict[str, Any]:
    producer = subprocess.Popen(
        [sys.executable, "-m", "bench.baselines.produce", system, str(count)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with polled_scalar(RESULT_COUNTS[system], database) as results:
        done_at = poll_count(results, count, 900, [worker])
    out, err = producer.communicate(timeout=60)
    if producer.returncode != 0:
        raise BenchError(f"{system} producer failed:\n{err[-3000:]}")
    produced = json.loads(out.strip().splitlines()[-1])
    seconds = done_at - produced["started_at"]
    return {
        "tasks": count,
        "seconds": seconds,
        "tps": count / seconds,
        "submit_tps": count / produced["seconds"],
        "busy_rss_mb": worker.peak_rss / MB,
    }


# 3. Latency


def latency(counts: Counts) -> dict[str, Any]:
    with (
        postgres_database("latency") as (_, database_url),
        rabbitmq_vhost("latency") as amqp,
        taskport("taskport-latency", database_url, amqp) as system,
    ):
        system.serve()
        system.start_workers(2)
        log(f"latency: submit -> handler start, {counts.latency_tasks} tasks one at a time")
        return run_json(
            [sys.executable, "-m", "bench.loadgen", "latency", f"{system.url}/v1/tasks",
             "--count", str(counts.latency_tasks), "--warmup", "10"]
        )  # fmt: skip


# 5. Scale


def list_latency(counts: Counts) -> dict[str, Any]:
    """List-page latency (first page, and pages deep in the set through cursors) with each
    of ``list_rows`` tasks stored: a database and an API for each, asked in turns, so both
    are measured in the same moments. The rows are written straight into the table."""
    with contextlib.ExitStack() as stack:
        amqp = stack.enter_context(rabbitmq_vhost("list"))
        systems: dict[str, Taskport] = {}
        for rows in counts.list_rows:
            label = rows_label(rows)
            database, database_url = stack.enter_context(postgres_database(label))
            systems[label] = stack.enter_context(taskport(f"list-{label}", database_url, amqp))
            log(f"scale: storing {rows} tasks")
            _store_tasks(database, rows)
        for system in systems.values():
            system.serve()
        settle()
        urls = {label: f"{system.url}/v1/tasks" for label, system in systems.items()}
        log(f"scale: list pages with {', '.join(label[5:] for label in urls)} tasks, in turns")
        figures = run_json(
            [sys.executable, "-m", "bench.loadgen", "pages", *urls.values(),
             "--count", "200", "--warmup", "20"]
        )  # fmt: skip
        return {label: figures[url] for label, url in urls.items()}


def _store_tasks(database: str, count: int) -> None:
    """``count`` tasks of one owner, SUCCEEDED, with time-ordered ids."""
    sql(
        f"""
        INSERT INTO tasks (
            id, owner, kind, payload, status, max_attempts, retry_base_delay, retry_factor,
            retry_max_delay, timeout, created_at, updated_at, attempts, started_at, finished_at,
            cancel_requested, result, version)
        SELECT
            (lpad(to_hex(1700000000000 + i), 12, '0') || '7000' || '8000'
                || lpad(to_hex(i), 12, '0'))::uuid,
            'local', 'echo', jsonb_build_object('n', i), 'SUCCEEDED', 3, interval '1 second',
            2.0, interval '5 minutes', interval '5 minutes',
            at, at, 1, at, at, false, jsonb_build_object('n', i), 3
        FROM generate_series(0, {count - 1}) AS i,
            LATERAL (SELECT to_timestamp((1700000000000 + i) / 1000.0) AS at) AS stamp
        """,
        database,
    )
    sql("VACUUM ANALYZE tasks", database)


def backlog_drain(counts: Counts) -> dict[str, Any]:
    """End-to-end throughput with ``backlog`` tasks already queued (submitted, and published
    to RabbitMQ, with no worker running): the rate at which 2 workers then finish the first
    ``backlog_measured`` of them, from the moment both are registered."""
    with (
        postgres_database("backlog") as (_, database_url),
        rabbitmq_vhost("backlog") as amqp,
        taskport("taskport-backlog", database_url, amqp) as system,
    ):
        system.serve()
        log(f"scale: queueing {counts.backlog} tasks with no worker running")
        _submitted(_submit_tasks(system, counts.backlog, counts.batch))
        poll_count(
            lambda: counts.backlog - system.stats()["outbox_backlog"], counts.backlog, 600,
            every=0.5,
        )  # fmt: skip
        system.start_workers(2)
        started_at, before = time.time(), system.counts()["SUCCEEDED"]
        goal = before + counts.backlog_measured
        done_at = poll_count(lambda: system.counts()["SUCCEEDED"], goal, 900, every=0.2)
        seconds = done_at - started_at
        return {
            "queued": counts.backlog,
            "tasks": counts.backlog_measured,
            "seconds": seconds,
            "tps": counts.backlog_measured / seconds,
        }
