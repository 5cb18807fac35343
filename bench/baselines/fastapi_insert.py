"""Baseline: a bare FastAPI endpoint that stores a submitted task with one durable INSERT.

BENCH_DATABASE_URL=postgresql://... uvicorn bench.baselines.fastapi_insert:app
"""

from __future__ import annotations

import json
import os
import uuid
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI
from pydantic import BaseModel

SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_tasks (
    id uuid PRIMARY KEY,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


class TaskIn(BaseModel):
    kind: str
    payload: dict[str, Any]


@asynccontextmanager
async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
    app.state.pool = await asyncpg.create_pool(os.environ["BENCH_DATABASE_URL"], max_size=10)
    await app.state.pool.execute(SCHEMA)
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/tasks", status_code=201)
async def submit(task: TaskIn) -> dict[str, str]:
    task_id = uuid.uuid4()
    await app.state.pool.execute(
        "INSERT INTO baseline_tasks (id, kind, payload, status) VALUES ($1, $2, $3, 'QUEUED')",
        task_id,
        task.kind,
        json.dumps(task.payload),
    )
    return {"id": str(task_id), "status": "QUEUED"}
