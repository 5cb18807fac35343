"""While the database is unreachable the API answers 503 with Retry-After, and it
recovers by itself when the database returns."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from adapters.storage.sql import SqlStorage
from entrypoints.container import create_container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.databases import emptied
from tests.integration.tcp_proxy import TcpProxy
from tests.polling import eventually


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    await (await emptied(SqlStorage.from_url(postgres_url))).close()
    running = TcpProxy(target_port=make_url(postgres_url).port or 5432)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def client(proxy: TcpProxy, postgres_url: str) -> AsyncIterator[httpx.AsyncClient]:
    url = make_url(postgres_url).set(port=proxy.port).render_as_string(hide_password=False)
    app = create_app(create_container(Settings(storage_url=url, sweep_interval_seconds=0.1)))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://taskport") as client:
            yield client


async def succeeded(client: httpx.AsyncClient, location: str) -> bool:
    response = await client.get(location)
    return response.status_code == 200 and response.json()["status"] == "SUCCEEDED"


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    # Where the database is, and what its driver said, are for the log only.
    assert response.json()["detail"] == "the storage is unavailable; try again"


async def test_an_unreachable_database_answers_503_then_recovers(
    client: httpx.AsyncClient, proxy: TcpProxy
) -> None:
    submitted = await client.post("/v1/tasks", json={"kind": "echo", "payload": {"n": 1}})
    assert submitted.status_code == 201
    location = f"/v1/tasks/{submitted.json()['id']}"
    # Run before the outage: a run cut by it would hold the task until its lease ends.
    await eventually(lambda: succeeded(client, location))
    assert (await client.get("/readyz")).status_code == 200

    await proxy.stop()
    assert_unavailable(await client.post("/v1/tasks", json={"kind": "echo", "payload": {}}))
    assert_unavailable(await client.get(location))
    assert_unavailable(await client.get("/v1/tasks"))
    not_ready = await client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["storage"]

    await proxy.start()

    await eventually(lambda: succeeded(client, location))
    assert (await client.get("/readyz")).status_code == 200
    resubmitted = await client.post("/v1/tasks", json={"kind": "echo", "payload": {"n": 2}})
    assert resubmitted.status_code == 201
    await eventually(lambda: succeeded(client, f"/v1/tasks/{resubmitted.json()['id']}"))
