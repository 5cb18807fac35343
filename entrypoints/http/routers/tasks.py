"""/v1/tasks: submit, read, list, cancel and retry tasks."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response, status

from adapters.codecs import CursorCodec
from application.ports.task_repository import TaskQuery
from application.use_cases.cancel_task import CancelTask, CancelTaskHandler
from application.use_cases.get_task import GetTask, GetTaskHandler
from application.use_cases.list_tasks import MAX_PAGE_SIZE, ListTasksHandler
from application.use_cases.retry_task import RetryTask, RetryTaskHandler
from application.use_cases.submit_task import SubmitTaskHandler
from application.use_cases.submit_task_batch import SubmitTaskBatch, SubmitTaskBatchHandler
from domain.values import TaskStatus
from entrypoints.http.dependencies import Owner, provided
from entrypoints.http.problems import Problem
from entrypoints.http.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    TaskBatchIn,
    TaskBatchOut,
    TaskIn,
    TaskOut,
    TaskPageOut,
)

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskOut)
async def submit_task(
    body: TaskIn,
    owner: Owner,
    response: Response,
    submit: SubmitTaskHandler = provided("submit_task"),
    idempotency_key: Annotated[str | None, Header()] = None,
) -> TaskOut:
    if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
        raise Problem(
            400,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
            "the Idempotency-Key header must be 1-255 visible ASCII characters",
        )
    submitted = await submit(body.command(owner, idempotency_key))
    response.headers["Location"] = f"/v1/tasks/{submitted.task.id}"
    if not submitted.created:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return TaskOut.of(submitted.task)


@router.post("/batch", status_code=status.HTTP_201_CREATED, response_model=TaskBatchOut)
async def submit_task_batch(
    body: TaskBatchIn,
    owner: Owner,
    submit: SubmitTaskBatchHandler = provided("submit_task_batch"),
) -> TaskBatchOut:
    commands = tuple(item.command(owner, item.idempotency_key) for item in body.tasks)
    submitted = await submit(SubmitTaskBatch(commands))
    return TaskBatchOut(items=[TaskOut.of(answer.task) for answer in submitted])


@router.get("/{task_id}", response_model=TaskOut)
async def get_task(
    task_id: UUID, owner: Owner, get: GetTaskHandler = provided("get_task")
) -> TaskOut:
    return TaskOut.of(await get(GetTask(owner, task_id)))


@router.get("", response_model=TaskPageOut)
async def list_tasks(
    owner: Owner,
    status: TaskStatus | None = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    list_tasks: ListTasksHandler = provided("list_tasks"),
    cursors: CursorCodec = provided("cursor_codec"),
) -> TaskPageOut:
    filters = {"status": status.value if status else None, "kind": kind}
    before = cursors.decode(cursor, filters) if cursor else None
    page = await list_tasks(
        TaskQuery(owner=owner, limit=limit, status=status, kind=kind, before=before)
    )
    return TaskPageOut(
        items=[TaskOut.of(task) for task in page.items],
        next_cursor=cursors.encode(page.next_before, filters) if page.next_before else None,
    )


@router.post("/{task_id}/cancel", response_model=TaskOut)
async def cancel_task(
    task_id: UUID, owner: Owner, cancel: CancelTaskHandler = provided("cancel_task")
) -> TaskOut:
    return TaskOut.of(await cancel(CancelTask(owner, task_id)))


@router.post("/{task_id}/retry", response_model=TaskOut)
async def retry_task(
    task_id: UUID, owner: Owner, retry: RetryTaskHandler = provided("retry_task")
) -> TaskOut:
    return TaskOut.of(await retry(RetryTask(owner, task_id)))
