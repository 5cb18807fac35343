"""Baseline: FastAPI calling Celery's ``.delay()`` for each submitted task.

    BENCH_BROKER_URL=amqp://... BENCH_DATABASE_URL=postgresql://... \
        uvicorn bench.baselines.fastapi_celery:app
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from bench.baselines.celery_app import noop

app = FastAPI()


class TaskIn(BaseModel):
    kind: str
    payload: dict[str, Any]


@app.post("/tasks", status_code=201)
def submit(task: TaskIn) -> dict[str, str]:
    # A plain function: FastAPI runs it in its thread pool, as Celery's client blocks.
    result = noop.delay(task.payload)
    return {"id": result.id, "status": "PENDING"}
