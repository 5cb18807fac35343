"""/v1/workers: the workers running tasks, as they last reported themselves."""

from __future__ import annotations

from application.use_cases.list_workers import ListWorkersHandler
from entrypoints.http.dependencies import Owner, provided
from entrypoints.http.routing import Router
from entrypoints.http.schemas import WorkerOut, WorkersOut

router = Router(prefix="/v1/workers", tags=["workers"])


@router.get("", response_model=WorkersOut)
async def list_workers(
    owner: Owner, list_workers: ListWorkersHandler = provided("list_workers")
) -> WorkersOut:
    """Every known worker, most recently started first; ``lost`` once its heartbeat stopped
    (its running tasks are then retried elsewhere)."""
    return WorkersOut(items=[WorkerOut.of(worker) for worker in await list_workers()])
