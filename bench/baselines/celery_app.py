"""Baseline: Celery with RabbitMQ as broker and PostgreSQL as result backend, acks_late.

    BENCH_BROKER_URL=amqp://... BENCH_DATABASE_URL=postgresql://... \
        celery -A bench.baselines.celery_app worker --concurrency 2
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "baseline",
    broker=os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="db+"
    + os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test").replace(
        "postgresql://", "postgresql+psycopg://"
    ),
)
app.conf.update(
    task_acks_late=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(payload: dict) -> dict:
    return payload
