"""/ui: a page to watch and manage tasks from a browser, served by the API itself.

Three fixed files (the page, its script, its style), read once from the package, with a
content security policy that lets the page load and call nothing but this server: it works
on a network with no way out, and data shown on it is never run as code. The page calls
the JSON API like any client; with API keys set, it asks for one and keeps it in the
browser tab's session storage.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import Response

from entrypoints.http.routing import Router

router = Router(prefix="/ui", include_in_schema=False)

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


@cache
def _read(name: str) -> bytes:
    return resources.files("entrypoints.http").joinpath("ui", name).read_bytes()


def _file(name: str) -> Response:
    return Response(
        _read(name),
        media_type=FILES[name],
        headers={
            "Content-Security-Policy": POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


@router.get("")
async def page() -> Response:
    return _file("index.html")


@router.get("/app.js")
async def script() -> Response:
    return _file("app.js")


@router.get("/app.css")
async def style() -> Response:
    return _file("app.css")
