"""Pure ASGI middleware: a request id for every request (the caller's X-Request-ID when it
is sane, else a new one), echoed in the response, and HTTP metrics by route and status."""

from __future__ import annotations

import os
import time

from fastapi import FastAPI
from starlette.routing import Match, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.observability.prometheus import PrometheusMetrics
from application import correlation

WAITING_READ = "taskport.waiting_read"
"""Set in the scope of a read that waits for its task to finish."""


def mark_waiting_read(scope: Scope) -> None:
    """Counts and times the request under its route with ``?wait``: a read waiting up to a
    minute for its task would give the plain reads of the route its task's latency."""
    scope[WAITING_READ] = True


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: PrometheusMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = correlation.fit_request_id(given) or os.urandom(16).hex()
        token = correlation.request_id.set(request_id)
        status = 500
        started = time.perf_counter()
        self.metrics.http_started()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation.request_id.reset(token)
            path = _route_path(scope)
            if scope.get(WAITING_READ):
                path += "?wait"
            self.metrics.observe_http(scope["method"], path, status, time.perf_counter() - started)


def _route_path(scope: Scope) -> str:
    """The path of the route as the API describes it (without a parameter's convertor);
    for a request answered before routing (a 415 or 413 of the body guard), the path of
    the OpenAPI document it falls under, and for Starlette's own routes (``/docs``), theirs."""
    routed = getattr(scope.get("route"), "path_format", None)
    if routed:
        return str(routed)
    app = scope.get("app")
    if not isinstance(app, FastAPI):
        return "unmatched"
    for described in app.openapi().get("paths", {}):
        if compile_path(described)[0].fullmatch(scope["path"]):
            return str(described)
    matched = (each for each in app.routes if each.matches(scope)[0] is Match.FULL)
    return getattr(next(matched, None), "path_format", None) or "unmatched"
