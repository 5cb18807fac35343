"""Task kinds for the benchmarks (loaded with TASKPORT_HANDLER_MODULES=bench.kinds)."""

from __future__ import annotations

import time
from typing import Any

from adapters.handlers.sdk import TaskContext, task_kind


@task_kind("bench.stamp", description="returns the wall-clock time its handler started")
async def stamp(payload: Any, context: TaskContext) -> dict[str, float]:
    return {"started": time.time()}
