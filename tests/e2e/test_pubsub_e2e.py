"""The push shape and the pull shape, through the Pub/Sub emulator, with real processes:
``taskport serve`` publishes; the emulator pushes to its webhook, or ``taskport worker``
pulls."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.cloud import pubsub_v1
from google.pubsub_v1 import types

from adapters.brokers.pubsub import PubSubOptions
from adapters.brokers.pubsub.publisher import REASON_ATTRIBUTE
from tests.e2e.server import ServerProcess, free_port, taskport
from tests.polling import eventually
from tests.pubsub import new_project, pull_all, subscribe

pytestmark = pytest.mark.e2e


def pubsub_env(tmp_path: Path, broker_url: str, emulator: Any) -> dict[str, str]:
    return {
        "PUBSUB_EMULATOR_HOST": emulator.host,
        "TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}",
        "TASKPORT_BROKER_URL": broker_url,
        "TASKPORT_PUBSUB_CREATE": "true",
        "TASKPORT_SWEEP_INTERVAL_SECONDS": "0.1",
    }


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for process in reversed(started):
        if isinstance(process, ServerProcess):
            process.stop()
        elif process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


async def run_echo(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url) as client:
        submitted = await client.post("/v1/tasks", json={"kind": "echo", "payload": {"via": "ps"}})
        assert submitted.status_code == 201, submitted.text
        task: dict[str, Any] = {}

        async def succeeded() -> bool:
            task.update((await client.get(submitted.headers["Location"])).json())
            return task["status"] == "SUCCEEDED"

        await eventually(succeeded, within=30, interval=0.1)
        return task


async def test_the_emulator_pushes_to_the_webhook_and_the_task_succeeds(
    pubsub_emulator: Any, tmp_path: Path, processes: list[Any]
) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/webhook/pubsub"
    url = f"pubsub://{new_project()}?subscription=taskport-tasks-push&push_endpoint={endpoint}"
    server = ServerProcess(pubsub_env(tmp_path, url, pubsub_emulator), tmp_path / "serve.log", port)
    processes.append(server)
    await server.start()
    task = await run_echo(server.base_url)
    assert task["result"] == {"via": "ps"}
    assert 'POST /webhook/pubsub HTTP/1.1" 204' in (tmp_path / "serve.log").read_text()


async def test_a_worker_pulls_from_pubsub_and_the_task_succeeds(
    pubsub_emulator: Any, tmp_path: Path, processes: list[Any]
) -> None:
    env = {**os.environ, **pubsub_env(tmp_path, f"pubsub://{new_project()}", pubsub_emulator)}
    server = ServerProcess(env, tmp_path / "serve.log")
    processes.append(server)
    await server.start()  # migrates the SQLite database before the worker opens it
    processes.append(taskport("worker", env=env, log=tmp_path / "worker.log"))
    task = await run_echo(server.base_url)
    assert task["result"] == {"via": "ps"}
    assert task["attempts"] == 1


async def test_a_poison_push_is_pushed_again_until_the_dead_letter_topic_takes_it(
    pubsub_emulator: Any, tmp_path: Path, processes: list[Any]
) -> None:
    port = free_port()
    options = PubSubOptions.from_url(f"pubsub://{new_project()}?subscription=taskport-tasks-push")
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    publisher.create_topic(name=options.topic_path)  # no dead-letter topic yet
    subscriber.create_subscription(
        request=types.Subscription(
            name=options.subscription_path,
            topic=options.topic_path,
            push_config=types.PushConfig(push_endpoint=f"http://127.0.0.1:{port}/webhook/pubsub"),
            retry_policy=types.RetryPolicy(
                minimum_backoff=timedelta(seconds=0.1), maximum_backoff=timedelta(seconds=0.5)
            ),
        )
    )
    url = f"pubsub://{options.project}?subscription=taskport-tasks-push"
    env = {**pubsub_env(tmp_path, url, pubsub_emulator), "TASKPORT_PUBSUB_CREATE": "false"}
    server = ServerProcess(env, tmp_path / "serve.log", port)
    processes.append(server)
    await server.start()
    publisher.publish(options.topic_path, b"poison", origin="test").result()

    def answered(status: int) -> int:
        return server.log.read_text().count(f'POST /webhook/pubsub HTTP/1.1" {status}')

    await eventually(lambda: answered(503) >= 2, within=30, interval=0.05)
    assert answered(204) == 0  # never acked while it cannot be dead-lettered
    publisher.create_topic(name=options.dead_letter_topic_path)
    subscriber.create_subscription(
        name=options.dead_letter_subscription_path, topic=options.dead_letter_topic_path
    )
    dead: list[Any] = []

    async def dead_lettered() -> bool:
        pulled = await asyncio.to_thread(pull_all, options.dead_letter_subscription_path)
        dead.extend(received.message for received in pulled)
        return bool(dead)

    await eventually(dead_lettered, within=30, interval=0.05)
    [copy] = dead
    assert copy.data == b"poison"
    assert copy.attributes["origin"] == "test"
    assert copy.attributes[REASON_ATTRIBUTE].startswith("not a run-task message")
    assert copy.attributes["taskport_source_subscription"] == options.subscription_path
    held = pubsub_emulator.state.subscriptions[options.subscription_path]
    await eventually(lambda: answered(204) == 1 and not held.ready and not held.leased)
    subscriber.close()


async def test_the_webhook_publishes_each_outcome_on_the_events_topic(
    pubsub_emulator: Any, tmp_path: Path, processes: list[Any]
) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/webhook/pubsub"
    options = PubSubOptions.from_url(
        f"pubsub://{new_project()}?subscription=taskport-tasks-push&push_endpoint={endpoint}"
    )
    listener = subscribe(options.events_topic_path)
    env = {
        **pubsub_env(
            tmp_path,
            f"pubsub://{options.project}?subscription=taskport-tasks-push&push_endpoint={endpoint}",
            pubsub_emulator,
        ),
        "TASKPORT_PUBLISH_EVENTS": "true",
    }
    server = ServerProcess(env, tmp_path / "serve.log", port)
    processes.append(server)
    await server.start()
    task = await run_echo(server.base_url)
    heard: list[Any] = []

    async def event_heard() -> bool:
        heard.extend(await asyncio.to_thread(pull_all, listener))
        return bool(heard)

    await eventually(event_heard, within=30, interval=0.05)
    [event] = heard
    body = json.loads(event.message.data)
    assert (body["type"], body["task"]["id"], body["task"]["result"]) == (
        "task.succeeded",
        task["id"],
        {"via": "ps"},
    )
    assert {name: event.message.attributes[name] for name in ("type", "kind", "task_id")} == {
        "type": "task.succeeded",
        "kind": "echo",
        "task_id": task["id"],
    }


async def test_a_long_push_is_not_taken_for_an_abandoned_run_by_the_recovery_sweep(
    pubsub_emulator: Any, tmp_path: Path, processes: list[Any]
) -> None:
    """The server running pushes is a worker in the registry, heartbeat and all: its own
    recovery sweep (here every half second, a worker lost after two) leaves their tasks be."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/webhook/pubsub"
    url = f"pubsub://{new_project()}?subscription=taskport-tasks-push&push_endpoint={endpoint}"
    env = {
        **pubsub_env(tmp_path, url, pubsub_emulator),
        "TASKPORT_RECOVERY_INTERVAL_SECONDS": "0.5",
        "TASKPORT_HEARTBEAT_SECONDS": "0.5",
        "TASKPORT_WORKER_LOST_AFTER_SECONDS": "2",
    }
    server = ServerProcess(env, tmp_path / "serve.log", port)
    processes.append(server)
    await server.start()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        submitted = await client.post(
            "/v1/tasks", json={"kind": "sleep", "payload": {"seconds": 4}, "max_attempts": 1}
        )
        task_id = submitted.json()["id"]
        task = (await client.get(f"/v1/tasks/{task_id}", params={"wait": 30})).json()
        workers = (await client.get("/v1/workers")).json()["items"]
    assert (task["status"], task["attempts"], task["error"]) == ("SUCCEEDED", 1, None)
    assert [worker["status"] for worker in workers] == ["alive"]


async def test_tasks_are_dispatched_while_the_events_topic_is_missing(
    pubsub_emulator: Any, tmp_path: Path, processes: list[Any]
) -> None:
    """Each outcome's event fails to publish; the task messages batched with them on their
    way to Pub/Sub are published, and marked sent."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/webhook/pubsub"
    url = f"pubsub://{new_project()}?subscription=taskport-tasks-push&push_endpoint={endpoint}"
    env = {
        **pubsub_env(tmp_path, url, pubsub_emulator),
        "TASKPORT_PUBLISH_EVENTS": "true",
        "TASKPORT_RELAY_SWEEP_AFTER_SECONDS": "0.5",
    }
    server = ServerProcess(env, tmp_path / "serve.log", port)
    processes.append(server)
    await server.start()
    await run_echo(server.base_url)  # the topics are made at first use
    with pubsub_v1.PublisherClient() as client:
        client.delete_topic(topic=PubSubOptions.from_url(url).events_topic_path)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        ids = []
        for _ in range(4):  # in turns, so that outcomes and new tasks meet in the relay
            submitted = await asyncio.gather(
                *(client.post("/v1/tasks", json={"kind": "echo", "payload": {}}) for _ in range(20))
            )
            ids.extend(response.json()["id"] for response in submitted)

        async def all_succeeded() -> bool:
            found = await client.get("/v1/tasks", params={"status": "SUCCEEDED", "limit": 100})
            return {task["id"] for task in found.json()["items"]} >= set(ids)

        await eventually(all_succeeded, within=30, interval=0.2)

    def unsent(topic: str) -> int:
        with closing(sqlite3.connect(tmp_path / "taskport.db")) as database:
            query = "SELECT count(*) FROM outbox WHERE topic = ? AND sent_at IS NULL"
            return int(database.execute(query, (topic,)).fetchone()[0])

    # The task messages are marked sent, so the relay does not publish them again and again.
    await eventually(lambda: unsent("tasks") == 0, within=10, interval=0.2)
    assert unsent("events") >= len(ids)
