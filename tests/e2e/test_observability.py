"""Metrics and logs reflect the work done."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path

import httpx
import psutil
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from entrypoints.container import create_container
from entrypoints.http.app import create_app
from entrypoints.http.dependencies import authenticate
from entrypoints.observability import CorrelationFilter
from entrypoints.settings import Settings
from tests.e2e.conftest import FAST, ApiFactory, wait_for_status
from tests.e2e.server import ServerProcess, free_port, taskport
from tests.polling import eventually
from tests.rabbitmq import broker_url


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_tasks_and_requests(api_factory: ApiFactory) -> None:
    api = await api_factory(stats_interval_seconds=0.05)
    echoes = [(await api.post("/v1/tasks", json={"kind": "echo"})).json()["id"] for _ in range(3)]
    failing = (await api.post("/v1/tasks", json={"kind": "fail", "max_attempts": 2})).json()["id"]
    await api.post("/v1/tasks", json={"kind": "nope"})
    for task_id in echoes:
        await wait_for_status(api, task_id, "SUCCEEDED")
    await wait_for_status(api, failing, "FAILED")

    async def gauges_caught_up() -> bool:
        found = samples((await api.get("/metrics")).text)
        failed = found.get(("taskport_tasks", frozenset({("status", "FAILED"), ("kind", "fail")})))
        # Published messages are marked sent a moment after their publish (MARK_DELAY).
        return failed == 1 and found.get(("taskport_outbox_backlog", frozenset())) == 0

    await eventually(gauges_caught_up)
    response = await api.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    def value(name: str, **labels: str) -> float:
        return found.get((name, frozenset(labels.items())), 0.0)

    assert value("taskport_tasks_submitted_total", kind="echo") == 3
    assert value("taskport_tasks_submitted_total", kind="fail") == 1
    assert value("taskport_tasks_started_total", kind="fail") == 2
    assert value("taskport_tasks_succeeded_total", kind="echo") == 3
    assert value("taskport_tasks_retry_scheduled_total", kind="fail") == 1
    assert value("taskport_tasks_failed_total", kind="fail") == 1
    assert value("taskport_task_run_duration_seconds_count", kind="echo", outcome="succeeded") == 3
    assert (
        value("taskport_http_requests_total", method="POST", route="/v1/tasks", status="201") == 4
    )
    assert (
        value("taskport_http_requests_total", method="POST", route="/v1/tasks", status="422") == 1
    )
    # A route is named by its path as the API describes it.
    assert value(
        "taskport_http_requests_total", method="GET", route="/v1/tasks/{task_id}", status="200"
    )
    assert value("taskport_tasks", status="SUCCEEDED", kind="echo") == 3
    assert value("taskport_queue_tasks", queue="default", status="SUCCEEDED") == 3
    assert value("taskport_queue_lag_seconds") == 0
    assert value("taskport_outbox_backlog") == 0
    assert ("taskport_schedule_lag_seconds", frozenset()) in found


async def test_one_process_of_a_deployment_exports_the_stored_tasks(
    api_factory: ApiFactory, tmp_path: Path
) -> None:
    """The gauges of the whole deployment come from the process holding the statistics
    lease: the others do not count every task again, and a sum over processes is right."""
    url = f"sqlite:///{tmp_path / 'taskport.db'}"
    apis = [await api_factory(storage_url=url, stats_interval_seconds=0.05) for _ in range(2)]
    for api in apis:
        task = (await api.post("/v1/tasks", json={"kind": "echo"})).json()
        await wait_for_status(api, task["id"], "SUCCEEDED")
    succeeded = ("taskport_tasks", frozenset({("status", "SUCCEEDED"), ("kind", "echo")}))

    async def exported() -> list[float | None]:
        return [samples((await api.get("/metrics")).text).get(succeeded) for api in apis]

    async def one_exports_both_tasks() -> bool:
        return sorted(await exported(), key=str) == [2.0, None]

    await eventually(one_exports_both_tasks)
    holder = (await exported()).index(2.0)
    other = apis[1 - holder]
    task = (await other.post("/v1/tasks", json={"kind": "echo"})).json()
    await wait_for_status(other, task["id"], "SUCCEEDED")
    expected: list[float | None] = [None, None]
    expected[holder] = 3.0

    async def the_holder_counts_the_third() -> bool:
        return await exported() == expected

    await eventually(the_holder_counts_the_third)


async def test_requests_refused_before_routing_are_counted_under_their_route(
    api_factory: ApiFactory,
) -> None:
    api = await api_factory(max_body_bytes=1024)
    await api.post("/v1/tasks", content=b"kind=echo", headers={"Content-Type": "text/plain"})
    await api.post("/v1/tasks", json={"kind": "echo", "payload": "x" * 2000})
    await api.get("/openapi.json")
    await api.get("/v1/no-such-route")
    found = samples((await api.get("/metrics")).text)

    def value(**labels: str) -> float:
        return found.get(("taskport_http_requests_total", frozenset(labels.items())), 0.0)

    assert value(method="POST", route="/v1/tasks", status="415") == 1
    assert value(method="POST", route="/v1/tasks", status="413") == 1
    assert value(method="GET", route="/openapi.json", status="200") == 1
    assert value(method="GET", route="unmatched", status="404") == 1


async def test_reads_waiting_for_their_task_are_timed_apart_from_plain_reads(
    api_factory: ApiFactory,
) -> None:
    """A read may wait up to a minute for its task: timed with the plain reads, it would
    make their latency that of the tasks, past the histogram's buckets."""
    api = await api_factory()
    task_id = (
        await api.post("/v1/tasks", json={"kind": "sleep", "payload": {"seconds": 0.2}})
    ).json()["id"]
    await api.get(f"/v1/tasks/{task_id}")
    waited = await api.get(f"/v1/tasks/{task_id}", params={"wait": 30})
    assert waited.json()["status"] == "SUCCEEDED"
    found = samples((await api.get("/metrics")).text)

    def value(name: str, **labels: str) -> float | None:
        return found.get((name, frozenset(labels.items())))

    plain, waiting = "/v1/tasks/{task_id}", "/v1/tasks/{task_id}?wait"
    count = "taskport_http_request_duration_seconds_count"
    assert value(count, method="GET", route=plain) == 1
    assert value(count, method="GET", route=waiting) == 1
    assert value("taskport_http_requests_total", method="GET", route=waiting, status="200") == 1
    # A wait's time falls in a bucket of its own size, up to the longest wait.
    bucket = "taskport_http_request_duration_seconds_bucket"
    assert value(bucket, method="GET", route=waiting, le="60.0") == 1


async def test_a_request_id_is_echoed_or_made(api_factory: ApiFactory) -> None:
    api = await api_factory()
    given = await api.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    for bad in ("bad id with spaces", "x" * 129, "abc-123\n"):
        made = await api.get("/healthz", headers={"X-Request-ID": bad})
        assert made.headers["x-request-id"] not in ("", bad), bad


async def test_a_browser_may_send_and_read_the_request_id(api_factory: ApiFactory) -> None:
    """With CORS origins set, a page of one of them may send X-Request-ID and read it back,
    as it may read Retry-After (on a 409 or 503)."""
    api = await api_factory(cors_origins="https://app.example")
    origin = {"Origin": "https://app.example"}
    preflight = await api.options(
        "/v1/tasks",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-request-id",
        },
    )
    assert preflight.status_code == 200, preflight.text
    answer = await api.get("/healthz", headers={**origin, "X-Request-ID": "page-1"})
    exposed = answer.headers["access-control-expose-headers"].lower().split(", ")
    assert {"x-request-id", "retry-after"} <= set(exposed)


@pytest.mark.parametrize(
    "origin", ["app.example.com", "https://app.example.com/", "https://app.example.com/page"]
)
def test_a_cors_origin_a_browser_never_sends_is_refused_by_name(origin: str) -> None:
    """A browser's Origin is scheme://host[:port]: anything else would never match."""
    with pytest.raises(ValidationError, match="scheme://host"):
        Settings(cors_origins=f"https://ok.example,{origin}")


def test_cors_origins_take_scheme_host_and_port_or_any() -> None:
    origins = "https://app.example,http://127.0.0.1:5173,*"
    assert Settings(cors_origins=origins).cors_origins == origins.split(",")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/tasks"),
        ("POST", "/v1/tasks"),
        ("POST", "/v1/schedules/01a24eea-826d-76eb-a062-bca0be39bfdd/pause"),
        ("DELETE", "/v1/schedules/01a24eea-826d-76eb-a062-bca0be39bfdd"),
    ],
)
async def test_a_browser_may_use_every_method_of_the_api(
    api_factory: ApiFactory, method: str, path: str
) -> None:
    api = await api_factory(cors_origins="https://app.example")
    preflight = await api.options(
        path,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert method in preflight.headers["access-control-allow-methods"].split(", ")


async def test_logs_are_json_lines_with_the_task_and_the_request(tmp_path: Path) -> None:
    server = ServerProcess(
        {
            "TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}",
            "TASKPORT_LOG_FORMAT": "json",
        },
        tmp_path / "serve.log",
    )
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            created = await client.post(
                "/v1/tasks", json={"kind": "echo"}, headers={"X-Request-ID": "req-42"}
            )
            task_id = created.json()["id"]
            failing = await client.post(
                "/v1/tasks",
                json={"kind": "fail", "max_attempts": 2},
                headers={"X-Request-ID": "req-43"},
            )
            await wait_for_status(client, task_id, "SUCCEEDED")
            await wait_for_status(client, failing.json()["id"], "FAILED")
    finally:
        server.stop()
    output = server.log.read_text()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert lines, output[:2000]
    about_task = {
        line["message"].split()[0]: line for line in lines if line.get("task_id") == task_id
    }
    assert {"TaskSubmitted", "TaskStarted", "TaskSucceeded"} <= set(about_task)
    # The worker's lines carry the request that submitted the task: it travelled in the message.
    assert about_task["TaskSubmitted"]["request_id"] == "req-42"
    assert about_task["TaskSucceeded"]["request_id"] == "req-42"
    # So do those of a later attempt, though a sweep queued it again, outside any request.
    attempts = [
        line
        for line in lines
        if line.get("task_id") == failing.json()["id"] and line["message"].startswith("TaskStarted")
    ]
    assert [line["request_id"] for line in attempts] == ["req-43", "req-43"]
    assert all({"time", "level", "name", "message"} <= set(line) for line in lines)
    # uvicorn's copy of a message with terminal colours is not a field of the JSON line.
    assert any(line["message"].startswith("Started server process") for line in lines)
    assert "\\u001b" not in output
    assert not [line for line in lines if "color_message" in line]


async def test_an_unexpected_error_is_logged_once_with_its_traceback_and_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Under uvicorn, as served: the server logs nothing more about it."""

    async def broken() -> str:
        raise RuntimeError("the owner lookup broke")

    app = create_app(create_container(Settings(**FAST)))
    app.dependency_overrides[authenticate] = broken
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    caplog.handler.addFilter(CorrelationFilter())
    try:
        await eventually(lambda: server.started)
        with caplog.at_level(logging.WARNING):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                answer = await client.get("/v1/stats", headers={"X-Request-ID": "req-500"})
    finally:
        server.should_exit = True
        await serving
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "/problems/internal-error"
    assert answer.headers["x-request-id"] == "req-500"
    [logged] = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert logged.exc_info is not None
    assert str(logged.exc_info[1]) == "the owner lookup broke"
    assert getattr(logged, "request_id", None) == "req-500"


async def test_a_worker_serves_metrics_on_its_own_port(rabbitmq_vhost: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}",
        "TASKPORT_BROKER_URL": broker_url(rabbitmq_vhost),
        "TASKPORT_METRICS_PORT": str(port),
    }
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    workers = [taskport("worker", env=env, log=log) for log in logs]
    try:
        async with httpx.AsyncClient() as client:

            async def serving() -> bool:
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/metrics")
                except httpx.TransportError:
                    return False
                # A worker's own metrics (the deployment's gauges come from the process
                # holding the statistics lease, which may be the other worker).
                return "# TYPE taskport_task_run_duration_seconds histogram" in response.text

            await eventually(serving, within=30)

        def one_found_the_port_taken() -> bool:
            return any("no /metrics for this worker" in log.read_text() for log in logs)

        await eventually(one_found_the_port_taken, within=30)
        # ... and runs on without /metrics.
        assert all(worker.poll() is None for worker in workers)
        # Unauthenticated: on the loopback address unless TASKPORT_METRICS_HOST says otherwise.
        listening = [
            connection.laddr
            for worker in workers
            for connection in psutil.Process(worker.pid).net_connections(kind="tcp")
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
        ]
        assert [address.ip for address in listening] == ["127.0.0.1"]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
