"""HTTP in, worker out, through a real RabbitMQ: the API with its embedded worker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from entrypoints.container import create_container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.polling import eventually
from tests.rabbitmq import broker_url

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
    assert response.json()["checks"]["broker"] is None
