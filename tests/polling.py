"""Waiting for asynchronous work in tests: poll a condition with a deadline, never sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

Condition = Callable[[], bool | Awaitable[bool]]


async def eventually(condition: Condition, within: float = 10.0, interval: float = 0.01) -> None:
    """Returns as soon as ``condition()`` is true; fails the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        outcome: Any = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} seconds")
        await asyncio.sleep(interval)
