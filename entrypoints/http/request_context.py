"""Pure ASGI middleware: a request id for every request (the caller's X-Request-ID when it
is sane, else a new one), echoed in the response, and HTTP metrics by route and status."""

from __future__ import annotations

import os
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.observability.prometheus import PrometheusMetrics
from application import correlation


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
            route = scope.get("route")
            # The path as the API describes it: without a parameter's convertor.
            path = getattr(route, "path_format", None) or "unmatched"
            self.metrics.observe_http(scope["method"], path, status, time.perf_counter() - started)
