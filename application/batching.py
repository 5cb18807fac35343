"""Batching of concurrent requests: what many callers ask for at once is done together."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from attrs import frozen

Item = TypeVar("Item")
Result = TypeVar("Result")


@frozen
class Request(Generic[Item]):
    """One caller's item, with the context it was added in (its request id, its task id)."""

    item: Item
    context: contextvars.Context


Process = Callable[[Sequence[Request[Item]]], Awaitable[Sequence[Result]]]


class Batcher(Generic[Item, Result]):
    """Runs ``process`` over the items added while earlier batches were being processed.

    ``add`` returns the item's result once the batch holding it is done, or raises what
    ``process`` raised for the whole batch. Up to ``concurrency`` batches run at a time;
    items added meanwhile wait and go together in the next one, up to ``max_batch``.
    Alone, an item is processed at once: batching costs no latency at low load, and under
    load a batch's round trips are shared by all of its items.

    ``process`` returns one result per request, in order.
    """

    def __init__(
        self, process: Process[Item, Result], max_batch: int, concurrency: int = 1
    ) -> None:
        self._process = process
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._waiting: list[tuple[Request[Item], asyncio.Future[Result]]] = []
        self._running: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Items added and not yet taken into a batch."""
        return len(self._waiting)

    async def add(self, item: Item) -> Result:
        return await self.put(item)

    def put(self, item: Item) -> asyncio.Future[Result]:
        """``add`` without waiting: the future completes with the item's result."""
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((Request(item, contextvars.copy_context()), done))
        if len(self._running) < self._concurrency:
            runner = asyncio.create_task(self._run_while_waiting())
            self._running.add(runner)
            runner.add_done_callback(self._running.discard)
        return done

    async def drain(self) -> None:
        """Returns once every item added so far was processed."""
        while self._running:
            await asyncio.wait(set(self._running))

    async def _run_while_waiting(self) -> None:
        batch: list[tuple[Request[Item], asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._run(batch)
        except BaseException:
            # Cancelled (the loop is closing): nobody is left waiting for an answer.
            for _, done in (*batch, *self._waiting):
                done.cancel()
            self._waiting.clear()
            raise
        finally:
            # Leaves the running set as it finds nothing waiting, not when its done
            # callback runs: an item added in between would otherwise find no room for a
            # runner and wait for the next one.
            self._running.discard(asyncio.current_task())

    async def _run(self, batch: list[tuple[Request[Item], asyncio.Future[Result]]]) -> None:
        try:
            results = await self._process([request for request, _ in batch])
        except Exception as error:
            for _, done in batch:
                if not done.done():
                    done.set_exception(error)
            return
        for (_, done), result in zip(batch, results, strict=True):
            if not done.done():
                done.set_result(result)
