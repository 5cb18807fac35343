from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from entrypoints.container import create_container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.e2e.tiny_http import TinyHttpServer
from tests.polling import eventually
from tests.pubsub import pubsub_emulator
from tests.rabbitmq import rabbitmq_vhost

__all__ = ["pubsub_emulator", "rabbitmq_vhost"]

FAST = {
    "storage_url": "memory://",
    "retry_base_seconds": 0.05,
    "retry_max_seconds": 0.2,
    "sweep_interval_seconds": 0.05,
    "cancel_poll_seconds": 0.05,
    "max_body_bytes": 4096,
    "shutdown_grace_seconds": 0.5,
}

ApiFactory = Callable[..., Any]


@pytest.fixture
async def api_factory() -> AsyncIterator[ApiFactory]:
    """Starts the API (with its embedded worker) in-process on the given settings."""
    managers: list[LifespanManager] = []

    async def start(overrides: dict[Any, Any] | None = None, **settings: Any) -> httpx.AsyncClient:
        app = create_app(create_container(Settings(**{**FAST, **settings})))
        app.dependency_overrides.update(overrides or {})
        manager = LifespanManager(app)
        await manager.__aenter__()
        managers.append(manager)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://taskport"
        )

    yield start
    for manager in reversed(managers):
        await manager.__aexit__(None, None, None)


@pytest.fixture(params=["memory", "sqlite", "mongo"])
async def api(
    api_factory: ApiFactory, request: pytest.FixtureRequest, tmp_path: Path
) -> httpx.AsyncClient:
    """The API on the in-process storage, on the embedded default (SQLite) and on MongoDB."""
    if request.param == "mongo":
        url: str = request.getfixturevalue("mongo_url")
    elif request.param == "memory":
        url = "memory://"
    else:
        url = f"sqlite:///{tmp_path / 'taskport.db'}"
    client: httpx.AsyncClient = await api_factory(storage_url=url)
    return client


async def wait_for_status(
    client: httpx.AsyncClient, task_id: str, *statuses: str, headers: Any = None
) -> dict[str, Any]:
    """Polls the task until it is in one of ``statuses``; returns it."""
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        response = await client.get(f"/v1/tasks/{task_id}", headers=headers)
        seen.update(response.json())
        return seen.get("status") in statuses

    await eventually(reached)
    return seen


def http_scope(
    method: str, path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    """The ASGI scope of a request, for a test that plays the server itself (sends its own
    ``receive`` messages: a client that hangs up)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.1", 50000),
        "server": ("taskport", 80),
    }


@pytest.fixture
async def remote() -> AsyncIterator[TinyHttpServer]:
    """A tiny HTTP server on 127.0.0.1; tests set its routes."""
    server = TinyHttpServer()
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield server
