"""The test emulator behaves as Pub/Sub where Taskport relies on it: the subscription's
dead-letter policy, delivery attempts, and push delivery with retries."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from google.cloud import pubsub_v1
from google.pubsub_v1 import types

from tests.pubsub import new_project, pull_all


def wait_until(condition: Any, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} seconds")
        time.sleep(0.02)


@pytest.fixture
def clients(pubsub_emulator: Any) -> Iterator[tuple[Any, Any, str]]:
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    project = new_project()
    for topic in ("tasks", "dead"):
        publisher.create_topic(name=f"projects/{project}/topics/{topic}")
    subscriber.create_subscription(
        name=f"projects/{project}/subscriptions/dead", topic=f"projects/{project}/topics/dead"
    )
    yield publisher, subscriber, project
    subscriber.close()


def subscription(project: str, **fields: Any) -> types.Subscription:
    return types.Subscription(
        name=f"projects/{project}/subscriptions/tasks",
        topic=f"projects/{project}/topics/tasks",
        dead_letter_policy=types.DeadLetterPolicy(
            dead_letter_topic=f"projects/{project}/topics/dead", max_delivery_attempts=5
        ),
        retry_policy=types.RetryPolicy(
            minimum_backoff=timedelta(seconds=0), maximum_backoff=timedelta(seconds=0)
        ),
        **fields,
    )


def test_a_message_nacked_max_delivery_attempts_times_is_dead_lettered(
    clients: tuple[Any, Any, str],
) -> None:
    publisher, subscriber, project = clients
    subscriber.create_subscription(request=subscription(project))
    publisher.publish(f"projects/{project}/topics/tasks", b"doomed").result()
    attempts: list[int] = []
    path = f"projects/{project}/subscriptions/tasks"
    dead: list[bytes] = []

    def dead_lettered() -> bool:
        _nack_all(subscriber, path, attempts)
        dead.extend(received.message.data for received in pull_all(dead_path))
        return bool(dead)

    dead_path = f"projects/{project}/subscriptions/dead"
    wait_until(dead_lettered)
    assert dead == [b"doomed"]
    assert attempts == [1, 2, 3, 4, 5]


def _nack_all(subscriber: Any, path: str, attempts: list[int]) -> None:
    response = subscriber.pull(subscription=path, max_messages=10, timeout=5)
    if not response.received_messages:
        return
    for received in response.received_messages:
        attempts.append(received.delivery_attempt)
    if response.received_messages:
        subscriber.modify_ack_deadline(
            subscription=path,
            ack_ids=[received.ack_id for received in response.received_messages],
            ack_deadline_seconds=0,
        )


class _Endpoint(BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(json.loads(body))
        status = type(self).answers.pop(0) if type(self).answers else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_push_delivers_the_envelope_and_retries_until_acked(
    clients: tuple[Any, Any, str], pubsub_emulator: Any
) -> None:
    publisher, subscriber, project = clients
    _Endpoint.answers = [500, 503]
    _Endpoint.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/webhook/pubsub"
        subscriber.create_subscription(
            request=subscription(project, push_config=types.PushConfig(push_endpoint=endpoint))
        )
        publisher.publish(f"projects/{project}/topics/tasks", b"hello", kind="echo").result()
        held = pubsub_emulator.state.subscriptions[f"projects/{project}/subscriptions/tasks"]
        wait_until(lambda: len(_Endpoint.bodies) >= 3 and not held.ready and not held.leased)
        assert len(_Endpoint.bodies) == 3  # acked by the 204: never pushed again
    finally:
        server.shutdown()
    first = _Endpoint.bodies[0]
    assert base64.b64decode(first["message"]["data"]) == b"hello"
    assert first["message"]["attributes"] == {"kind": "echo"}
    assert first["message"]["messageId"] and first["message"]["publishTime"].endswith("Z")
    assert first["subscription"] == f"projects/{project}/subscriptions/tasks"
    assert [body["deliveryAttempt"] for body in _Endpoint.bodies] == [1, 2, 3]
