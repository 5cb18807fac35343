"""The OpenAPI document: FastAPI's, with the errors the API answers declared as what they
are, RFC 9457 problems (``application/problem+json``), and the bearer API key.

Routes declare their own errors (``responses={404: {"description": ...}}``); every
operation under ``/v1`` also answers 401 (API keys configured, none or a wrong one sent)
and 503 (storage or broker unavailable), and every one with a body 400 (malformed-json),
413 and 415.

The answers that name a task or a schedule link to what can be done with it next (OpenAPI
``links``): a submit to reading, cancelling, retrying and deleting its task, a new schedule to
reading, pausing, resuming and deleting it. A request's ``kind`` is declared as one of the
kinds the deployment registered, and its ``payload`` as what that kind takes: one variant
per kind (``oneOf``), with the kind's payload schema (``GET /v1/kinds`` serves the same).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from application.ports.handlers import KindInfo
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


TASK_ACTIONS = {
    "task": ("/v1/tasks/{task_id}", "get"),
    "cancel": ("/v1/tasks/{task_id}/cancel", "post"),
    "retry": ("/v1/tasks/{task_id}/retry", "post"),
    "delete": ("/v1/tasks/{task_id}", "delete"),
}
SCHEDULE_ACTIONS = {
    "schedule": ("/v1/schedules/{schedule_id}", "get"),
    "pause": ("/v1/schedules/{schedule_id}/pause", "post"),
    "resume": ("/v1/schedules/{schedule_id}/resume", "post"),
    "delete": ("/v1/schedules/{schedule_id}", "delete"),
}
ITS_ID = "$response.body#/id"
FIRST_ITEMS_ID = "$response.body#/items/0/id"
LINKS = [
    # (operation, its answers, where the id is in them, the parameter it fills, actions)
    (("/v1/tasks", "post"), ("200", "201"), ITS_ID, "task_id", TASK_ACTIONS),
    (("/v1/tasks/batch", "post"), ("201",), FIRST_ITEMS_ID, "task_id", TASK_ACTIONS),
    (("/v1/tasks", "get"), ("200",), FIRST_ITEMS_ID, "task_id", TASK_ACTIONS),
    (("/v1/tasks/{task_id}", "get"), ("200",), ITS_ID, "task_id", TASK_ACTIONS),
    (("/v1/schedules", "post"), ("201",), ITS_ID, "schedule_id", SCHEDULE_ACTIONS),
    (("/v1/schedules", "get"), ("200",), FIRST_ITEMS_ID, "schedule_id", SCHEDULE_ACTIONS),
]
"""What the answers of an operation link to (the first item's, for a page or a batch)."""
KIND_INPUTS = ("TaskIn", "TaskBatchItemIn", "ScheduleIn")
"""The request bodies that name a kind."""


def openapi_document(
    app: FastAPI, keys_required: bool, kinds: Callable[[], Sequence[KindInfo]]
) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: FastAPI's document, built once, with the errors as problems and the
    links above. The ``/v1`` operations require the bearer API key with ``keys_required``
    (API keys are configured); without, they take it or nothing. A task's or a schedule's
    ``kind`` is one of ``kinds()``, the kinds this deployment registered, and its payload
    what that kind takes."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            _declare_problems(document, keys_required)
            _declare_links(document)
            _declare_kinds(document, kinds())
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


def _declare_links(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for (path, method), statuses, expression, parameter, actions in LINKS:
        responses = paths[path][method]["responses"]
        links = {
            name: {
                "operationId": paths[target][verb]["operationId"],
                "parameters": {parameter: expression},
            }
            for name, (target, verb) in actions.items()
            if (target, verb) != (path, method)
        }
        for status in statuses:
            responses[status]["links"] = links


def _declare_kinds(document: dict[str, Any], kinds: Sequence[KindInfo]) -> None:
    schemas = document["components"]["schemas"]
    registered = sorted(kinds, key=lambda kind: kind.name)
    variants = [_variant(kind, schemas) for kind in registered]
    for name in KIND_INPUTS:
        schemas[name]["properties"]["kind"]["enum"] = [kind.name for kind in registered]
        schemas[name]["oneOf"] = variants


def _variant(kind: KindInfo, schemas: dict[str, Any]) -> dict[str, Any]:
    """The request of one kind: its payload as the kind's schema says, required when the
    schema requires fields (an absent payload is ``{}``)."""
    variant: dict[str, Any] = {"title": kind.name, "properties": {"kind": {"const": kind.name}}}
    payload = _payload_schema(kind, schemas)
    if payload is not None:
        variant["properties"]["payload"] = payload
        if payload.get("required"):
            variant["required"] = ["payload"]
    return variant


def _payload_schema(kind: KindInfo, schemas: dict[str, Any]) -> dict[str, Any] | None:
    """``kind``'s payload schema, its local definitions (``$defs``, ``definitions``) lifted
    into the components under names of the kind's own. None for a kind that takes any
    payload, or whose schema refers elsewhere (it then takes any payload here)."""
    if kind.payload_schema is None:
        return None
    local = ("$defs", "definitions")
    schema = {key: value for key, value in kind.payload_schema.items() if key not in local}
    prefix = re.sub(r"[^A-Za-z0-9._-]", "_", kind.name)
    lifted: dict[str, Any] = {}
    for key in local:
        for name, definition in (kind.payload_schema.get(key) or {}).items():
            lifted[f"#/{key}/{name}"] = (f"{prefix}.{name}", definition)
    renamed = {local: f"#/components/schemas/{name}" for local, (name, _) in lifted.items()}
    try:
        schema = _with_refs(schema, renamed)
        definitions = {name: _with_refs(body, renamed) for name, body in lifted.values()}
    except KeyError:
        return None
    schemas.update(definitions)
    return schema


def _with_refs(node: Any, renamed: dict[str, str]) -> Any:
    """``node`` with each ``$ref`` renamed; KeyError for one ``renamed`` does not know."""
    if isinstance(node, dict):
        return {
            key: renamed[value]
            if key == "$ref" and isinstance(value, str)
            else _with_refs(value, renamed)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_with_refs(item, renamed) for item in node]
    return node
