"""Baseline: Dramatiq on RabbitMQ; each task writes its result row to PostgreSQL.

    BENCH_BROKER_URL=amqp://... BENCH_DATABASE_URL=postgresql://... \
        dramatiq bench.baselines.dramatiq_app --processes 2
"""

from __future__ import annotations

import json
import os
import threading

import dramatiq
import psycopg
from dramatiq.brokers.rabbitmq import RabbitmqBroker

SCHEMA = """
CREATE TABLE IF NOT EXISTS dramatiq_results (
    message_id text PRIMARY KEY,
    result jsonb NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
)
"""

broker = RabbitmqBroker(
    url=os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
)
broker.add_middleware(dramatiq.middleware.CurrentMessage())
dramatiq.set_broker(broker)

_local = threading.local()


def _connection() -> psycopg.Connection:
    """One connection per worker thread, in autocommit: each INSERT is its own commit."""
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = psycopg.connect(os.environ["BENCH_DATABASE_URL"], autocommit=True)
        _local.connection = connection
    return connection


def create_schema() -> None:
    with psycopg.connect(os.environ["BENCH_DATABASE_URL"], autocommit=True) as connection:
        connection.execute(SCHEMA)


@dramatiq.actor(queue_name="baseline", max_retries=3)
def noop(payload: dict) -> None:
    message = dramatiq.middleware.CurrentMessage.get_current_message()
    _connection().execute(
        "INSERT INTO dramatiq_results (message_id, result) VALUES (%s, %s)"
        " ON CONFLICT (message_id) DO NOTHING",
        (message.message_id if message else None, json.dumps(payload)),
    )
