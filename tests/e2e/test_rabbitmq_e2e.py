"""HTTP in, worker out, through a real RabbitMQ: the API with its embedded worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from adapters.brokers.rabbitmq import RabbitMqOptions
from entrypoints.container import create_container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.e2e.conftest import ApiFactory
from tests.polling import eventually
from tests.rabbitmq import broker_url, listen, read_events

pytestmark = pytest.mark.e2e


@pytest.fixture
async def client(rabbitmq_vhost: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        storage_url="memory://", broker_url=broker_url(rabbitmq_vhost), embedded_worker=True
    )
    app = create_app(create_container(settings))
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://taskport"
        ) as client,
    ):
        yield client


async def test_a_submitted_task_runs_through_rabbitmq_and_succeeds(
    client: httpx.AsyncClient,
) -> None:
    submitted = await client.post("/v1/tasks", json={"kind": "echo", "payload": {"hi": 1}})
    assert submitted.status_code == 201
    location = submitted.headers["Location"]
    task: dict[str, object] = {}

    async def succeeded() -> bool:
        task.update((await client.get(location)).json())
        return task["status"] == "SUCCEEDED"

    await eventually(succeeded)
    assert task["result"] == {"hi": 1}


async def test_readiness_reports_the_broker_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == "ok"


async def test_task_outcomes_are_published_on_the_events_exchange(
    rabbitmq_vhost: str, api_factory: ApiFactory
) -> None:
    url = broker_url(rabbitmq_vhost)
    exchange = RabbitMqOptions.from_url(url).topology.events_exchange
    everything = await asyncio.to_thread(listen, url, exchange, "#")
    failures = await asyncio.to_thread(listen, url, exchange, "task.failed.#")
    async with await api_factory(
        broker_url=url, embedded_worker=True, publish_events=True
    ) as client:
        echoed = (await client.post("/v1/tasks", json={"kind": "echo", "payload": 1})).json()
        failed = (
            await client.post(
                "/v1/tasks", json={"kind": "fail", "payload": {"message": "no"}, "max_attempts": 1}
            )
        ).json()
        later = (
            await client.post(
                "/v1/tasks", json={"kind": "echo", "payload": 2, "run_at": "2999-01-01T00:00:00Z"}
            )
        ).json()
        assert (await client.post(f"/v1/tasks/{later['id']}/cancel")).status_code == 200
        heard: list[tuple[bytes, dict[str, Any]]] = []

        async def three_heard() -> bool:
            heard.extend(await read_events(url, everything))
            return len(heard) >= 3

        await eventually(three_heard)
        stored = {
            task["id"]: (await client.get(f"/v1/tasks/{task['id']}")).json()
            for task in (echoed, failed, later)
        }

    events = [(json.loads(body), route) for body, route in heard]
    assert sorted((event["task"]["id"], route["routing_key"]) for event, route in events) == sorted(
        [
            (echoed["id"], "task.succeeded.echo"),
            (failed["id"], "task.failed.fail"),
            (later["id"], "task.cancelled.echo"),
        ]
    )
    for event, route in events:
        task = stored[event["task"]["id"]]
        assert event["task"] == {
            **{name: task[name] for name in ("id", "kind", "status", "attempts", "result")},
            **{name: task[name] for name in ("created_at", "finished_at", "error", "schedule_id")},
            "owner": "local",
        }
        assert (route["type"], route["task_id"], route["kind"]) == (
            event["type"],
            task["id"],
            task["kind"],
        )
    [(body, route)] = await read_events(url, failures)
    assert json.loads(body)["task"]["id"] == failed["id"]
