"""A consumer running in the background for the length of a block."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any


@contextlib.asynccontextmanager
async def consuming(
    consumer: Any,
    callback: Callable[[Any], Awaitable[None]],
    prefetch: int = 10,
    limits: dict[str, int] | None = None,
) -> AsyncIterator[asyncio.Task[None]]:
    """Runs ``consumer.consume(callback, prefetch, limits)``; stops it when the block ends."""
    task = asyncio.create_task(consumer.consume(callback, prefetch, limits))
    try:
        yield task
    finally:
        if not task.done():
            await consumer.stop()
        await asyncio.gather(task, return_exceptions=True)
