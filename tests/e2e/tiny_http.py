"""A tiny HTTP server on 127.0.0.1 for the tests of outbound calls (the http kind,
callbacks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

Answer = tuple[int, dict[str, str], bytes]


class TinyHttpServer:
    """HTTP/1.1, one request per connection; each path answers by a function of how many
    times it was asked."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.routes: dict[str, Callable[[int], Answer]] = {}
        self.port = 0

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.strip().split("\r\n")
            method, target, _ = request_line.split(" ")
            headers = {
                name.strip().lower(): value.strip()
                for name, value in (line.split(":", 1) for line in lines)
            }
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            path = target.split("?", 1)[0]
            self.hits[path] += 1
            self.requests.append(
                {"method": method, "target": target, "headers": headers, "body": body}
            )
            status, answer_headers, content = self.routes[path](self.hits[path])
            writer.write(f"HTTP/1.1 {status} Whatever\r\n".encode())
            for name, value in {"Connection": "close", **answer_headers}.items():
                writer.write(f"{name}: {value}\r\n".encode())
            writer.write(b"\r\n")
            for start in range(0, len(content), 64 * 1024):
                writer.write(content[start : start + 64 * 1024])
                await writer.drain()
        writer.close()


def json_answer(status: int, value: Any, **headers: str) -> Answer:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(value).encode()
