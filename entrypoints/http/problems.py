"""RFC 9457 problem details: every error the HTTP API answers, in one place."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.codecs import InvalidCursor
from application.errors import (
    ConcurrencyConflict,
    DuplicateIdempotencyKey,
    IdempotencyKeyReused,
    InvalidBatch,
    InvalidPayload,
    ScheduleNameTaken,
    ScheduleNotFound,
    TaskNotFound,
    TooManySchedules,
    Unavailable,
    UnknownKind,
    UnknownQueue,
)
from domain.errors import IllegalTransition, InvalidSchedule, InvalidTask

logger = logging.getLogger("taskport.http")

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answered as problem+json; routers and middleware raise it directly."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    def body(self, instance: str) -> dict[str, Any]:
        return {
            "type": f"/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            **self.extensions,
        }

    def response(self, instance: str) -> JSONResponse:
        return JSONResponse(
            self.body(instance),
            status_code=self.status,
            headers=self.headers,
            media_type=PROBLEM_JSON,
        )


def _validation_problem(errors: Iterable[Any]) -> Problem:
    errors = list(errors)
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error") or error.get("msg")
            detail = "the request body is not valid JSON" + (f": {reason}" if reason else "")
            return Problem(400, "malformed-json", "Malformed JSON", detail)
    described = [
        {"location": [str(part) for part in error.get("loc", ())], "message": error.get("msg")}
        for error in errors
    ]
    summary = "; ".join(f"{'.'.join(e['location'])}: {e['message']}" for e in described)
    return Problem(422, "invalid-request", "Invalid request", summary, errors=described)


def problem_for(exc: Exception) -> Problem:
    """The answer to an exception raised while serving a request."""
    match exc:
        case Problem():
            return exc
        case RequestValidationError():
            return _validation_problem(exc.errors())
        case TaskNotFound():
            return Problem(404, "task-not-found", "Task not found", str(exc))
        case ScheduleNotFound():
            return Problem(404, "schedule-not-found", "Schedule not found", str(exc))
        case ScheduleNameTaken():
            return Problem(409, "schedule-name-taken", "Schedule name taken", str(exc))
        case TooManySchedules():
            return Problem(409, "too-many-schedules", "Too many schedules", str(exc))
        case InvalidSchedule():
            return Problem(422, "invalid-schedule", "Invalid schedule", str(exc))
        case UnknownKind():
            return Problem(
                422, "unknown-kind", "Unknown task kind", str(exc), known_kinds=exc.known
            )
        case UnknownQueue():
            return Problem(422, "unknown-queue", "Unknown queue", str(exc), known_queues=exc.known)
        case InvalidPayload():
            errors = [{"message": message} for message in exc.errors]
            return Problem(422, "invalid-payload", "Invalid payload", str(exc), errors=errors)
        case InvalidBatch():
            return Problem(
                422,
                "invalid-batch",
                "Invalid batch",
                str(exc),
                errors=[{"index": index, "message": message} for index, message in exc.problems],
            )
        case InvalidTask():
            return Problem(422, "invalid-task", "Invalid task", str(exc))
        case IllegalTransition():
            return Problem(409, "illegal-transition", "Not allowed in this state", str(exc))
        case IdempotencyKeyReused():
            return Problem(
                409,
                "idempotency-key-reused",
                "Idempotency key reused",
                str(exc),
                task_id=str(exc.task_id),
            )
        case DuplicateIdempotencyKey():
            # Left only when concurrent requests kept taking the keys of this one.
            return Problem(
                409,
                "concurrent-change",
                "Changed concurrently",
                f"{exc} by a request stored at the same time; try again",
                headers={"Retry-After": "1"},
            )
        case ConcurrencyConflict():
            return Problem(
                409,
                "concurrent-change",
                "Changed concurrently",
                f"{exc}; try again",
                headers={"Retry-After": "1"},
            )
        case InvalidCursor():
            return Problem(400, "invalid-cursor", "Invalid cursor", str(exc))
        case Unavailable():
            # The reason names hosts, ports and driver errors: for the log, not the client.
            logger.warning("answered 503: %s", exc)
            return Problem(
                503,
                "service-unavailable",
                "Service unavailable",
                f"the {exc.service} is unavailable; try again",
                headers={"Retry-After": str(exc.retry_after_seconds)},
            )
        case ClientDisconnect():
            # Answered to nobody; 499 (nginx's "client closed request") in logs and metrics.
            return Problem(
                499, "client-closed-request", "Client closed request", "the client hung up"
            )
        case StarletteHTTPException() if isinstance(exc.__cause__, ClientDisconnect):
            # FastAPI's answer to a body that never came whole.
            return problem_for(exc.__cause__)
        case StarletteHTTPException() if exc.status_code == 400:
            # FastAPI's answer to a body it failed to read without a decode error (routes
            # read JSON with routing.read_json, whose every refusal is one).
            detail = f"the request body could not be parsed as JSON: {exc.detail}"
            return Problem(400, "malformed-json", "Malformed JSON", detail)
        case StarletteHTTPException():
            title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
            return Problem(
                exc.status_code,
                title.lower().replace(" ", "-"),
                title,
                str(exc.detail),
                headers=dict(exc.headers or {}),
            )
    # Logged where it is caught: by UnexpectedErrors, or outside it by the server.
    return _internal_error()


def _internal_error() -> Problem:
    return Problem(500, "internal-error", "Internal error", "the server failed to answer")


class UnexpectedErrors:
    """Pure ASGI middleware: an exception no handler answered is logged here, once, with its
    traceback and the request id, and answered as a problem+json 500.

    FastAPI gives a handler for ``Exception`` to Starlette's ServerErrorMiddleware, which
    answers outside every middleware of the app (no request id, no CORS headers), then
    raises the exception again for the server, which logs it a second time. Errors caught
    here never reach it. Once the answer has started there is no 500 to give: the error is
    logged, and the server ends the unfinished answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, noting_start)
        except Exception:
            logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if not started:
                await _internal_error().response(scope["path"])(scope, receive, send)


def install(app: FastAPI) -> None:
    """Routes every error to one problem+json answer."""

    async def answer(request: Request, exc: Exception) -> JSONResponse:
        problem = problem_for(exc)
        if problem.status == 405:
            problem.headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem.response(request.url.path)

    for error in (
        Problem,
        RequestValidationError,
        StarletteHTTPException,
        TaskNotFound,
        ScheduleNotFound,
        ScheduleNameTaken,
        TooManySchedules,
        InvalidSchedule,
        UnknownKind,
        UnknownQueue,
        InvalidPayload,
        InvalidBatch,
        InvalidTask,
        IllegalTransition,
        IdempotencyKeyReused,
        DuplicateIdempotencyKey,
        ConcurrencyConflict,
        InvalidCursor,
        Unavailable,
        ClientDisconnect,
        Exception,
    ):
        app.add_exception_handler(error, answer)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route serves on the request's path. Starlette's 405 names those
    of the first route whose path matched only (POST for /v1/tasks, which GET serves too)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    ]
