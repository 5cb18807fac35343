"""Headless Chromium driven over the DevTools protocol, for tests of the /ui page: open a
page, run JavaScript in it, wait for what it shows. Skips the test where Chromium is not
installed (Debian's package ``chromium``; ``.ci/run`` installs it)."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.server import free_port

STARTUP_SECONDS = 30


class Page:
    """One tab: ``goto`` an address, ``evaluate`` an expression in it (awaiting a promise),
    ``wait_for`` an expression to hold."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        sent = next(self._ids)
        await self._socket.send(json.dumps({"id": sent, "method": method, "params": params}))
        while True:  # events come in between: skipped
            answer = json.loads(await self._socket.recv())
            if answer.get("id") == sent:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer["result"]
                return result

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def wait_for(self, expression: str, within: float = 10) -> Any:
        """The value of ``expression`` once it is truthy; fails the test after ``within``."""
        deadline = time.monotonic() + within
        while not (value := await self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {within} seconds: {expression}")
            await asyncio.sleep(0.05)
        return value


@asynccontextmanager
async def chromium() -> AsyncIterator[Page]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    port = free_port()
    # Chromium's helpers may still write to the profile as it exits: left to the OS then.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        process = await asyncio.create_subprocess_exec(
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            "about:blank",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            address = await _page_address(port, process)
            async with connect(address, max_size=None) as socket:
                page = Page(socket)
                await page.call("Page.enable")
                yield page
        finally:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _page_address(port: int, process: asyncio.subprocess.Process) -> str:
    """The DevTools address of the browser's first tab, once it listens."""
    deadline = time.monotonic() + STARTUP_SECONDS
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        while True:
            if process.returncode is not None:
                raise AssertionError(f"chromium exited with {process.returncode}")
            try:
                targets = (await client.get("/json/list")).json()
                pages = [target for target in targets if target["type"] == "page"]
                if pages:
                    address: str = pages[0]["webSocketDebuggerUrl"]
                    return address
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"chromium not listening within {STARTUP_SECONDS} seconds")
            await asyncio.sleep(0.1)
