"""The router every API route is declared on: FastAPI's, with HEAD wherever GET is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter


class Router(APIRouter):
    """An ``APIRouter`` whose GET routes answer HEAD too, as Starlette's routes do and
    FastAPI's do not.

    HEAD runs the GET's endpoint, so it answers with the same authentication, status,
    headers and problems; the server sends no body. It stays out of the OpenAPI document,
    which keeps one operation (and operation id) per route.
    """

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().add_api_route(path, endpoint, **options)
        methods = {method.upper() for method in options.get("methods") or ["GET"]}
        if "GET" in methods and "HEAD" not in methods:
            head = {**options, "methods": ["HEAD"], "include_in_schema": False}
            super().add_api_route(path, endpoint, **head)
