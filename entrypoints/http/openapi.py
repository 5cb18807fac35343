"""The OpenAPI document: FastAPI's, with the errors the API answers declared as what they
are, RFC 9457 problems (``application/problem+json``), and the bearer API key.

Routes declare their own errors (``responses={404: {"description": ...}}``); every
operation under ``/v1`` also answers 401 (API keys configured, none or a wrong one sent)
and 503 (storage or broker unavailable), and every one with a body 400 (malformed-json),
413 and 415.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from entrypoints.http.problems import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "examples": ["/problems/task-not-found"]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "the path of the request"},
        "errors": {
            "type": "array",
            "description": "invalid-request, invalid-payload, invalid-batch: each thing wrong",
            "items": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {"type": "string"},
                    "location": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "invalid-request: where, as FastAPI names it",
                    },
                    "index": {
                        "type": ["integer", "null"],
                        "description": "invalid-batch: the item's place in the batch",
                    },
                },
            },
        },
        "known_kinds": {
            "type": "array",
            "items": {"type": "string"},
            "description": "unknown-kind: the kinds this deployment has",
        },
        "task_id": {
            "type": "string",
            "description": "idempotency-key-reused: the task the key is held by",
        },
    },
}
COMMON_ERRORS = {
    401: "an API key is needed (TASKPORT_API_KEYS is set) and none or an unknown one was sent",
    503: "the storage or the broker is unavailable; Retry-After says when to try again",
}
BODY_ERRORS = {
    400: "the body is not JSON (malformed-json)",
    413: "the body is over TASKPORT_MAX_BODY_BYTES",
    415: "the body is not JSON (Content-Type)",
}
INVALID_PARAMETER = "a parameter breaks the schema (invalid-request)"
INVALID_BODY = (
    "the request breaks the schema (invalid-request), or what it asks is refused: a kind "
    "that does not exist (unknown-kind), a payload or a task that cannot be "
    "(invalid-payload, invalid-task), a batch with such items (invalid-batch), a cron "
    "expression or a time zone that cannot be read (invalid-schedule)"
)
BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "an API key of TASKPORT_API_KEYS (none is needed when none is set)",
}


def problem_responses(app: FastAPI, keys_required: bool) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: FastAPI's document, built once, with the errors as problems. The
    ``/v1`` operations require the bearer API key with ``keys_required`` (API keys are
    configured); without, they take it or nothing."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            _declare_problems(document, keys_required)
            app.openapi_schema = document
        return app.openapi_schema

    return openapi


def _declare_problems(document: dict[str, Any], keys_required: bool) -> None:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components.setdefault("securitySchemes", {})["bearer"] = BEARER
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                body = "requestBody" in operation
                responses["422"]["description"] = INVALID_BODY if body else INVALID_PARAMETER
            if path.startswith("/v1/"):
                operation["security"] = [{"bearer": []}] if keys_required else [{"bearer": []}, {}]
                for status, description in COMMON_ERRORS.items():
                    responses.setdefault(str(status), {"description": description})
            if "requestBody" in operation:
                for status, description in BODY_ERRORS.items():
                    responses.setdefault(str(status), {"description": description})
            for status, response in responses.items():
                if int(status) >= 400:
                    response["content"] = problem
