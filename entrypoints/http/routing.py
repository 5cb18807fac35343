"""The router every API route is declared on: FastAPI's, with HEAD wherever GET is, and
request bodies read as JSON one way on every route."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute
from pydantic_core import from_json
from starlette.requests import ClientDisconnect

T = TypeVar("T")


def read_json(body: bytes) -> Any:
    """``body`` as JSON, read by pydantic-core (UTF-8 only, no byte order mark, no lone
    surrogate, at most 200 levels deep); a ``json.JSONDecodeError`` with the parser's
    reason otherwise, which FastAPI answers as ``json_invalid``."""
    try:
        return from_json(body)
    except ValueError as exc:
        # The reason names the line and column; the error has no position of its own.
        raise json.JSONDecodeError(str(exc), body.decode("utf-8", "replace"), 0) from exc


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """The result of ``work``, which is cancelled (and ``ClientDisconnect`` raised) if the
    client hangs up first: a read waiting for its task would go on for nobody."""

    async def hang_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    working, watching = asyncio.ensure_future(work), asyncio.ensure_future(hang_up())
    try:
        await asyncio.wait((working, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        working.cancel()
    if not working.done() or working.cancelled():
        raise ClientDisconnect
    return working.result()


class JsonRequest(Request):
    """A request whose JSON body FastAPI reads with ``read_json``, not Python's ``json``."""

    async def json(self) -> Any:
        return read_json(await self.body())


class JsonRoute(APIRoute):
    """A route reading its JSON body with ``read_json`` (FastAPI's custom request class
    pattern), so that the same bad body is the same problem on every route."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        if self.body_field is None:
            return handle

        async def handle_json(request: Request) -> Response:
            return await handle(JsonRequest(request.scope, request.receive))

        return handle_json


def answer_head_wherever_get(app: FastAPI) -> None:
    """Adds HEAD to the GET routes of ``app`` that lack it: those the app declares itself
    rather than on a ``Router`` (the docs pages), answered as ``Router`` answers HEAD."""
    routes = [route for route in app.routes if isinstance(route, APIRoute)]
    served = {(route.path, method) for route in routes for method in route.methods}
    for route in routes:
        if "GET" in route.methods and (route.path, "HEAD") not in served:
            app.add_api_route(route.path, route.endpoint, methods=["HEAD"], include_in_schema=False)


class Router(APIRouter):
    """An ``APIRouter`` of ``JsonRoute``s whose GET routes answer HEAD too, as Starlette's
    routes do and FastAPI's do not.

    HEAD runs the GET's endpoint, so it answers with the same authentication, status,
    headers and problems; the server sends no body. It stays out of the OpenAPI document,
    which keeps one operation (and operation id) per route.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**{"route_class": JsonRoute, **options})

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().add_api_route(path, endpoint, **options)
        methods = {method.upper() for method in options.get("methods") or ["GET"]}
        if "GET" in methods and "HEAD" not in methods:
            head = {**options, "methods": ["HEAD"], "include_in_schema": False}
            super().add_api_route(path, endpoint, **head)
