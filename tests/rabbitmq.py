"""A RabbitMQ for tests: started if it is down, with a virtual host of its own per test
run, deleted at the end, so runs never see each other's queues."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest

HOST, PORT = "127.0.0.1", 5672
START_TIMEOUT = 60.0


def rabbitmqctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def is_listening() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=1):
            return True
    except OSError:
        return False


def ensure_running() -> None:
    """Starts RabbitMQ's application, or the whole node, when nothing listens on 5672."""
    if is_listening():
        return
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("RabbitMQ is not installed and nothing listens on 127.0.0.1:5672")
    if rabbitmqctl("start_app").returncode != 0:
        subprocess.run(["rabbitmq-server", "-detached"], check=False, timeout=60)
    deadline = time.monotonic() + START_TIMEOUT
    while not is_listening():
        if time.monotonic() > deadline:
            pytest.fail("RabbitMQ did not start within a minute")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def rabbitmq_vhost() -> Iterator[str]:
    ensure_running()
    vhost = f"taskport-test-{uuid.uuid4().hex[:12]}"
    for command in (
        ("add_vhost", vhost),
        ("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"),
    ):
        done = rabbitmqctl(*command)
        if done.returncode != 0:
            pytest.fail(f"rabbitmqctl {' '.join(command)} failed: {done.stderr}")
    yield vhost
    ensure_running()
    rabbitmqctl("delete_vhost", vhost)


def broker_url(vhost: str, queue_type: str = "quorum") -> str:
    """A URL with a prefix of its own, so every test starts with empty queues."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return f"amqp://guest:guest@{HOST}:{PORT}/{vhost}?prefix={prefix}&queue_type={queue_type}"


class RawHeaders(pika.BasicProperties):
    """A message id and a field table sent byte for byte as given: what another client may
    send, where pika would refuse to encode the values."""

    def __init__(self, message_id: str, table: bytes) -> None:
        super().__init__(message_id=message_id)
        self.table = table

    def encode(self) -> list[bytes]:
        message_id = self.message_id.encode()
        flags = self.FLAG_HEADERS | self.FLAG_MESSAGE_ID
        return [
            struct.pack(">HI", flags, len(self.table)),
            self.table,
            struct.pack("B", len(message_id)),
            message_id,
        ]


async def publish(
    url: str, queue: str, body: bytes, headers: dict[str, Any] | bytes, message_id: str
) -> None:
    """Publishes one message to ``queue`` as any AMQP client may, with ``headers`` as pika
    encodes them or, given bytes, a field table as encoded there."""

    def send() -> None:
        connection = pika.BlockingConnection(pika.URLParameters(url.split("?", 1)[0]))
        try:
            properties = (
                RawHeaders(message_id, headers)
                if isinstance(headers, bytes)
                else pika.BasicProperties(message_id=message_id, headers=headers)
            )
            connection.channel().basic_publish("", queue, body, properties)
        finally:
            connection.close()

    await asyncio.to_thread(send)


async def read_queue(url: str, queue: str) -> list[bytes]:
    """The bodies waiting in ``queue``, left in place."""
    return [body for body, _ in await read_messages(url, queue)]


async def read_messages(url: str, queue: str) -> list[tuple[bytes, dict[str, Any]]]:
    """The bodies and headers waiting in ``queue``, left in place."""
    return [
        (body, dict(properties.headers or {}))
        for _, properties, body in await _get_all(url, queue, take=False)
    ]


async def _get_all(url: str, queue: str, take: bool) -> list[tuple[Any, Any, bytes]]:
    """Every message waiting in ``queue`` (method, properties, body), taken or left in
    place; read in a thread of its own: a blocking connection never runs on the event
    loop."""

    def read() -> list[tuple[Any, Any, bytes]]:
        connection = pika.BlockingConnection(pika.URLParameters(url.split("?", 1)[0]))
        try:
            channel = connection.channel()
            messages = []
            while True:
                method, properties, body = channel.basic_get(queue, auto_ack=take)
                if method is None:
                    return messages
                messages.append((method, properties, body))
        finally:
            connection.close()

    return await asyncio.to_thread(read)


def listen(url: str, exchange: str, binding_key: str) -> str:
    """A queue of its own bound to the topic ``exchange`` (declared as Taskport declares
    it) with ``binding_key``, as a subscriber of task events makes one; returns its name."""
    queue = f"listener-{uuid.uuid4().hex[:10]}"
    connection = pika.BlockingConnection(pika.URLParameters(url.split("?", 1)[0]))
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, exchange, routing_key=binding_key)
    finally:
        connection.close()
    return queue


async def read_events(url: str, queue: str) -> list[tuple[bytes, dict[str, Any]]]:
    """The task events waiting in ``queue``, taken: each body with its routing key, its
    AMQP type and headers."""
    return [
        (
            body,
            {
                "routing_key": method.routing_key,
                "type": properties.type,
                **(properties.headers or {}),
            },
        )
        for method, properties, body in await _get_all(url, queue, take=True)
    ]
