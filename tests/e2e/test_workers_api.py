"""GET /v1/workers through the in-process API."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import ApiFactory

pytestmark = pytest.mark.e2e


async def test_the_embedded_worker_is_listed_alive(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/workers")
    assert response.status_code == 200
    (worker,) = response.json()["items"]
    assert worker["status"] == "alive"
    assert worker["concurrency"] >= 1
    assert worker["running"] == 0
    assert set(worker) >= {"id", "host", "pid", "started_at", "last_heartbeat"}


async def test_the_workers_need_an_api_key_when_keys_are_set(api_factory: ApiFactory) -> None:
    client = await api_factory(api_keys={"alice": "alice-key"})
    assert (await client.get("/v1/workers")).status_code == 401
    authorized = await client.get("/v1/workers", headers={"Authorization": "Bearer alice-key"})
    assert authorized.status_code == 200
