"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from entrypoints.container import Container
from entrypoints.http import problems
from entrypoints.http.body_guard import BodyGuard
from entrypoints.http.openapi import openapi_document
from entrypoints.http.request_context import RequestContext
from entrypoints.http.routers import schedules, system, tasks, ui, workers
from entrypoints.http.routing import answer_head_wherever_get
from entrypoints.webhook.router import router as webhook_router
from entrypoints.worker.runtime import Runtime


def create_app(container: Container) -> FastAPI:
    """The API over ``container``; the lifespan starts the relay, the sweep and, when
    configured, the embedded worker. Nothing connects before the app starts."""
    settings = container.settings()
    serves_pushes = container.broker_scheme() == "pubsub"  # only Pub/Sub pushes its messages

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(
            container,
            consume=settings.runs_embedded_worker,
            # Pub/Sub may push tasks to the webhook: the process runs them as a worker.
            runs_pushes=serves_pushes,
        )
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    # The docs pages (/docs, /redoc) load Swagger UI and ReDoc from this server, not from a
    # CDN: they work on a network with no way out.
    app = FastAPIOffline(
        title="Taskport",
        version="0.1.0",
        summary="Submit tasks over HTTP, run them in workers, read their results.",
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.owners_by_key_digest = settings.owners_by_key_digest()
    app.openapi = openapi_document(  # type: ignore[method-assign]
        app,
        keys_required=bool(settings.api_keys),
        kinds=lambda: container.registry().kinds(),
    )
    problems.install(app)
    # The last added runs first. Unexpected errors are caught within the request's context
    # (its id), around the body guard (whose own exception passes through the routes to it).
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(problems.UnexpectedErrors)
    app.add_middleware(RequestContext, metrics=container.metrics())
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],  # DELETE: a task or a schedule
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["Location", "Idempotent-Replayed", "Retry-After", "X-Request-ID"],
        )
    app.include_router(tasks.router)
    app.include_router(schedules.router)
    app.include_router(workers.router)
    app.include_router(system.router)
    app.include_router(ui.router)
    if serves_pushes:
        app.include_router(webhook_router)
    answer_head_wherever_get(app)  # the docs pages, declared by the app itself
    return app
