"""/v1/tasks: submit, read, list, cancel and retry tasks."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.convertors import StringConvertor, register_url_convertor

from adapters.codecs import CursorCodec
from application.ports.task_repository import TaskQuery
from application.use_cases.cancel_task import CancelTask, CancelTaskHandler
from application.use_cases.cancel_tasks import CancelTasksHandler
from application.use_cases.delete_task import DeleteTask, DeleteTaskHandler
from application.use_cases.get_task import MAX_WAIT, GetTask, GetTaskHandler
from application.use_cases.list_tasks import MAX_PAGE_SIZE, ListTasksHandler
from application.use_cases.retry_task import RetryTask, RetryTaskHandler
from application.use_cases.retry_tasks import RetryTasksHandler
from application.use_cases.submit_task import SubmitTaskHandler
from application.use_cases.submit_task_batch import SubmitTaskBatch, SubmitTaskBatchHandler
from domain.task import KIND_PATTERN
from domain.values import QUEUE_PATTERN, TaskStatus
from entrypoints.http.dependencies import Owner, authenticate, container_of, provided
from entrypoints.http.problems import Problem
from entrypoints.http.request_context import mark_waiting_read
from entrypoints.http.routing import JsonRoute, Router, read_json, unless_disconnected
from entrypoints.http.schemas import (
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_KEY_PATTERN,
    BulkChangeOut,
    CancelTasksIn,
    RetryTasksIn,
    TaskBatchIn,
    TaskBatchOut,
    TaskIn,
    TaskOut,
    TaskPageOut,
)

router = Router(prefix="/v1/tasks", tags=["tasks"])

NOT_FOUND: dict[str, Any] = {"description": "no such task (or another owner's)"}
NOT_NOW: dict[str, Any] = {
    "description": "not in this state (illegal-transition), or changed at the same time "
    "(concurrent-change)"
}


class _TaskIdSegment(StringConvertor):
    """A path segment that may be a task id: any but ``batch``, ``cancel`` and ``retry``,
    the routes on many tasks, so that a GET of /v1/tasks/batch is that route's 405 (Allow:
    POST), not a 422 for a bad id."""

    regex = r"(?!(?:batch|cancel|retry)\Z)[^/]+"


register_url_convertor("task_id", _TaskIdSegment())


class _SubmitRoute(JsonRoute):
    """``POST /v1/tasks``, the busiest route, without FastAPI's generic request solving.

    The endpoint's signature still declares the operation (body, header, responses in
    OpenAPI), and the endpoint still does the work; its arguments are read here directly:
    the body read by ``read_json`` and validated as FastAPI validates it, the owner and the
    use case without a dependency graph. Errors come in FastAPI's order and words:
    malformed JSON, then authentication, then validation.

    An application that overrides dependencies (``app.dependency_overrides``: its own
    authentication, a test's fake) gets FastAPI's generic solving instead, which honours
    them.
    """

    ARGUMENTS = frozenset({"body", "owner", "submit", "idempotency_key"})

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        declared = set(inspect.signature(endpoint).parameters)
        if declared != self.ARGUMENTS:
            raise TypeError(f"{endpoint.__name__} takes {declared}, not {set(self.ARGUMENTS)}")
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        solved = super().get_route_handler()

        async def handle(request: Request) -> Response:
            if getattr(request.app, "dependency_overrides", None):
                return await solved(request)
            body = await request.body()
            try:
                parsed = read_json(body) if body else None
            except json.JSONDecodeError as exc:
                raise RequestValidationError(
                    [{"type": "json_invalid", "loc": ("body",), "msg": exc.msg}]
                ) from exc
            owner = await authenticate(request)
            if not body:
                raise RequestValidationError(
                    [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
                )
            try:
                task = TaskIn.model_validate(parsed, from_attributes=True)  # as FastAPI does
            except ValidationError as exc:
                raise RequestValidationError(
                    [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
                ) from exc
            response: Response = await endpoint(
                body=task,
                owner=owner,
                submit=container_of(request).submit_task(),
                idempotency_key=_one_idempotency_key(request),
            )
            return response

        return handle


def _one_idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key; several lines of it are one field (``a, b``), which
    names no key: a problem, not the first line taken for the key."""
    keys = request.headers.getlist("idempotency-key")
    if len(keys) > 1:
        raise Problem(
            400,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
            f"send one Idempotency-Key header, not {len(keys)}",
        )
    return keys[0] if keys else None


async def submit_task(
    body: TaskIn,
    owner: Owner,
    submit: SubmitTaskHandler = provided("submit_task"),
    idempotency_key: Annotated[
        str | None,
        Header(
            description="a repeat of this request with the same key returns the same task",
            json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
        ),
    ] = None,
) -> Response:
    if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise Problem(
            400,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
            "the Idempotency-Key header must be 1-255 visible ASCII characters",
        )
    submitted = await submit(body.command(owner, idempotency_key))
    headers = {"Location": f"/v1/tasks/{submitted.task.id}"}
    if not submitted.created:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        TaskOut.of(submitted.task).model_dump_json(),
        status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK,
        headers,
        media_type="application/json",
    )


router.add_api_route(
    "",
    submit_task,
    methods=["POST"],
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    route_class_override=_SubmitRoute,
    responses={
        200: {
            "model": TaskOut,
            "description": "a repeat of an earlier request with the same Idempotency-Key: "
            "the task that request created",
            "headers": {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}},
        },
        201: {
            "description": "the task, stored",
            "headers": {"Location": {"description": "the task", "schema": {"type": "string"}}},
        },
        400: {
            "description": "the body is not JSON (malformed-json), or the Idempotency-Key is "
            "not 1-255 visible ASCII characters (invalid-idempotency-key)"
        },
        409: {
            "description": "the Idempotency-Key holds a different request "
            "(idempotency-key-reused), or one stored at the same time (concurrent-change)"
        },
    },
)


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskBatchOut,
    responses={
        400: {
            "description": "the body is not JSON (malformed-json), or an Idempotency-Key "
            "header came with it: a batch takes an idempotency_key per item "
            "(invalid-idempotency-key)"
        },
        409: {
            "description": "an item's key holds a different request (idempotency-key-reused), "
            "or one stored at the same time (concurrent-change)"
        },
    },
)
async def submit_task_batch(
    body: TaskBatchIn,
    owner: Owner,
    submit: SubmitTaskBatchHandler = provided("submit_task_batch"),
    idempotency_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    if idempotency_key is not None:
        # Ignored, it would let a client repeat the batch in the belief that it is safe.
        raise Problem(
            400,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
            "a batch takes an idempotency_key in each item, not the Idempotency-Key header",
        )
    commands = tuple(item.command(owner, item.idempotency_key) for item in body.tasks)
    submitted = await submit(SubmitTaskBatch(commands))
    # Encoded once: the declared response model is for the API description only, and a
    # thousand tasks are not validated again on their way out.
    answer = TaskBatchOut(items=[TaskOut.of(answer.task) for answer in submitted])
    return Response(
        answer.model_dump_json(), status.HTTP_201_CREATED, media_type="application/json"
    )


@router.get("/{task_id:task_id}", response_model=TaskOut, responses={404: NOT_FOUND})
async def get_task(
    request: Request,
    task_id: UUID,
    owner: Owner,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT.total_seconds(),
            description="seconds to wait for the task to finish (SUCCEEDED, FAILED or "
            "CANCELLED) before answering with it as it is then",
        ),
    ] = 0,
    get: GetTaskHandler = provided("get_task"),
) -> TaskOut:
    read = get(GetTask(owner, task_id, timedelta(seconds=wait)))
    if not wait:
        return TaskOut.of(await read)
    mark_waiting_read(request.scope)
    return TaskOut.of(await unless_disconnected(request, read))


@router.get(
    "",
    response_model=TaskPageOut,
    responses={400: {"description": "a cursor this server did not issue for this query"}},
)
async def list_tasks(
    owner: Owner,
    status: Annotated[
        list[TaskStatus] | None,
        Query(
            max_length=len(TaskStatus),
            description="only the tasks in this status; repeated, in any of them "
            "(`?status=QUEUED&status=RUNNING`)",
        ),
    ] = None,
    kind: Annotated[str | None, Query(pattern=KIND_PATTERN.pattern)] = None,
    queue: Annotated[
        str | None,
        Query(pattern=QUEUE_PATTERN.pattern, description="only the tasks of this queue"),
    ] = None,
    schedule_id: Annotated[
        UUID | None, Query(description="only the tasks this schedule submitted")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    list_tasks: ListTasksHandler = provided("list_tasks"),
    cursors: CursorCodec = provided("cursor_codec"),
) -> TaskPageOut:
    statuses = frozenset(status or ())
    # One status reads as it always did: cursors issued before several could be asked
    # still read.
    filters = {"status": ",".join(sorted(statuses)) or None, "kind": kind}
    # Absent when not asked: cursors issued before these filters still read.
    if queue is not None:
        filters["queue"] = queue
    if schedule_id is not None:
        filters["schedule_id"] = str(schedule_id)
    before = cursors.decode(cursor, filters) if cursor else None
    page = await list_tasks(
        TaskQuery(
            owner, limit, statuses, kind=kind, queue=queue, schedule_id=schedule_id, before=before
        )
    )
    return TaskPageOut(
        items=[TaskOut.of(task) for task in page.items],
        next_cursor=cursors.encode(page.next_before, filters) if page.next_before else None,
    )


@router.post("/cancel", response_model=BulkChangeOut)
async def cancel_tasks(
    body: CancelTasksIn, owner: Owner, cancel: CancelTasksHandler = provided("cancel_tasks")
) -> BulkChangeOut:
    """Cancel the waiting tasks (SCHEDULED, QUEUED) that match, up to `limit`, newest first:
    everything that waits in a queue, of a kind, or from a schedule. Call again until
    `more` is false."""
    return BulkChangeOut.of(await cancel(body.matching(owner, body.status)))


@router.post("/retry", response_model=BulkChangeOut)
async def retry_tasks(
    body: RetryTasksIn, owner: Owner, retry: RetryTasksHandler = provided("retry_tasks")
) -> BulkChangeOut:
    """Send the finished tasks that match (FAILED by default, or CANCELLED) back to the
    queue with fresh attempts, up to `limit`, newest first. Call again until `more` is
    false."""
    return BulkChangeOut.of(await retry(body.matching(owner, body.status)))


@router.post("/{task_id}/cancel", response_model=TaskOut, responses={404: NOT_FOUND, 409: NOT_NOW})
async def cancel_task(
    task_id: UUID, owner: Owner, cancel: CancelTaskHandler = provided("cancel_task")
) -> TaskOut:
    return TaskOut.of(await cancel(CancelTask(owner, task_id)))


@router.post("/{task_id}/retry", response_model=TaskOut, responses={404: NOT_FOUND, 409: NOT_NOW})
async def retry_task(
    task_id: UUID, owner: Owner, retry: RetryTaskHandler = provided("retry_task")
) -> TaskOut:
    return TaskOut.of(await retry(RetryTask(owner, task_id)))


@router.delete(
    "/{task_id:task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: NOT_FOUND, 409: NOT_NOW},
)
async def delete_task(
    task_id: UUID, owner: Owner, delete: DeleteTaskHandler = provided("delete_task")
) -> Response:
    """A finished task (SUCCEEDED, FAILED or CANCELLED): its payload and result are gone,
    and its idempotency key is free again. A task that has not finished is cancelled first
    (409 until then)."""
    await delete(DeleteTask(owner, task_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
