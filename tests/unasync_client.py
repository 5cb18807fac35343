"""Writes ``client/taskport_client/sync_client.py`` from ``async_client.py``, as httpcore writes
its sync code from its async code: the two clients stay one piece of code.

    python -m tests.unasync_client   # after a change to async_client.py

``tests/unit/test_python_client.py`` fails while the sync client is not the one this makes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CLIENT = Path(__file__).parents[1] / "client" / "taskport_client"

SUBSTITUTIONS = [
    ("AsyncIterator, Callable, Sequence", "Callable, Iterator, Sequence"),
    ("AsyncRetrying", "Retrying"),
    ("Taskport's API from asyncio code:", "Taskport's API:"),
    ("httpx.AsyncClient", "httpx.Client"),
    ("AsyncClient", "Client"),
    ("__aenter__", "__enter__"),
    ("__aexit__", "__exit__"),
    ("aclose", "close"),
    ("AsyncIterator[", "Iterator["),
    ("  # noqa: ASYNC109", ""),
    ("async for ", "for "),
    ("async def ", "def "),
    ("await ", ""),
    ('"""The client for asyncio code."""',
     '"""The client for code without asyncio: the same calls as ``AsyncClient``, blocking."""'),
]  # fmt: skip
ASYNC_ONLY = re.compile(r"^ *# The timeouts are told.*\n^ *# the time is over.*\n", re.MULTILINE)
"""A comment on the async client's ``timeout`` parameters, for asyncio users."""
YIELD_EACH = re.compile(r"for item in (.+):\n( +)    yield item\n")


def unasync(source: str) -> str:
    source = ASYNC_ONLY.sub("", source)
    for old, new in SUBSTITUTIONS:
        source = source.replace(old, new)
    return YIELD_EACH.sub(r"yield from \1\n", source)


def sync_source() -> str:
    """The sync client as ruff formats it."""
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", "sync_client.py", "-"],
        input=unasync((CLIENT / "async_client.py").read_text()),
        capture_output=True,
        text=True,
        check=True,
    )
    return formatted.stdout


if __name__ == "__main__":
    (CLIENT / "sync_client.py").write_text(sync_source())
