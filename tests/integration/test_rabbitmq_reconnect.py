"""RabbitMQ going away and coming back (``rabbitmqctl stop_app`` / ``start_app``).

Set RABBITMQ_SKIP_RESTART_TESTS=1 to skip: it restarts the broker of the whole machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from adapters.brokers.rabbitmq import RabbitMqConsumer, RabbitMqOptions, RabbitMqPublisher
from application.errors import BrokerUnavailable
from entrypoints.container import create_container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.factories import make_message
from tests.polling import eventually
from tests.rabbitmq import broker_url, ensure_running, rabbitmqctl

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("RABBITMQ_SKIP_RESTART_TESTS")),
    reason="RABBITMQ_SKIP_RESTART_TESTS is set",
)

RECOVERY = 60.0


class Side:
    """A publisher and a consumer of one queue, recording what the consumer received."""

    def __init__(self, vhost: str) -> None:
        options = RabbitMqOptions.from_url(broker_url(vhost))
        self.publisher = RabbitMqPublisher(options)
        self.consumer = RabbitMqConsumer(options)
        self.received: list[bytes] = []
        self.consuming: asyncio.Task[None] | None = None

    def start(self) -> None:
        async def record(delivery: Any) -> None:
            self.received.append(delivery.body)
            await delivery.ack()

        self.consuming = asyncio.create_task(self.consumer.consume(record, 10))

    async def published(self, body: bytes) -> bool:
        try:
            await self.publisher.publish([make_message(body)])
        except BrokerUnavailable:
            return False
        return True

    async def close(self) -> None:
        await self.consumer.stop()
        if self.consuming is not None:
            await asyncio.gather(self.consuming, return_exceptions=True)
        await self.consumer.close()
        await self.publisher.close()


@pytest.fixture
async def restarts_rabbitmq() -> AsyncIterator[None]:
    """Makes sure RabbitMQ is running again at the end, whatever the test did to it."""
    try:
        yield
    finally:
        await asyncio.to_thread(ensure_running)


async def run(*args: str) -> None:
    done = await asyncio.to_thread(rabbitmqctl, *args)
    assert done.returncode == 0, done.stderr


async def test_publisher_and_consumers_ride_out_a_broker_restart(
    rabbitmq_vhost: str, restarts_rabbitmq: None
) -> None:
    running, late = Side(rabbitmq_vhost), Side(rabbitmq_vhost)
    try:
        running.start()
        assert await running.published(b"before")
        await eventually(lambda: running.received == [b"before"])

        await run("stop_app")
        late.start()  # a consumer whose RabbitMQ is not up yet
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            await running.publisher.publish([make_message(b"while down")])
        assert time.monotonic() - started < 5, "publishing while down must fail promptly"
        with pytest.raises(BrokerUnavailable):
            await running.publisher.check()

        await run("start_app")
        await eventually(lambda: running.published(b"after"), within=RECOVERY, interval=0.2)
        await eventually(lambda: late.published(b"late"), within=RECOVERY, interval=0.2)
        await eventually(lambda: running.received == [b"before", b"after"], within=RECOVERY)
        await eventually(lambda: late.received == [b"late"], within=RECOVERY)
    finally:
        await running.close()
        await late.close()


async def test_the_api_accepts_tasks_while_rabbitmq_is_down_and_runs_them_after(
    rabbitmq_vhost: str, restarts_rabbitmq: None
) -> None:
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
        await run("stop_app")
        submitted = await client.post("/v1/tasks", json={"kind": "echo", "payload": 1})
        assert submitted.status_code == 201
        assert (await client.get("/readyz")).status_code == 503
        await run("start_app")

        async def succeeded() -> bool:
            task = (await client.get(submitted.headers["Location"])).json()
            return bool(task["status"] == "SUCCEEDED")

        await eventually(succeeded, within=RECOVERY, interval=0.2)
