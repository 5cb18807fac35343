"""Batching: concurrent items share a run of ``process``; none is ever left waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from application.batching import Batcher, Request


async def test_an_item_added_as_the_last_batch_ends_is_processed() -> None:
    batches: list[list[int]] = []

    async def process(requests: Sequence[Request[int]]) -> list[int]:
        batches.append([request.item for request in requests])
        return [request.item * 10 for request in requests]

    batcher: Batcher[int, int] = Batcher(process, max_batch=10, concurrency=1)
    async with asyncio.timeout(2):
        assert await batcher.add(1) == 10
        # Added while the runner of the first batch is finishing: it must start another.
        assert await batcher.add(2) == 20
    assert batches == [[1], [2]]


async def test_items_added_while_a_batch_runs_go_together_in_the_next() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    batches: list[list[int]] = []

    async def process(requests: Sequence[Request[int]]) -> list[int]:
        batches.append([request.item for request in requests])
        started.set()
        await release.wait()
        return [request.item for request in requests]

    batcher: Batcher[int, int] = Batcher(process, max_batch=3, concurrency=1)
    first = asyncio.create_task(batcher.add(0))
    await started.wait()
    rest = [asyncio.create_task(batcher.add(n)) for n in range(1, 6)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(first, *rest) == [0, 1, 2, 3, 4, 5]
    assert batches == [[0], [1, 2, 3], [4, 5]]


async def test_a_failed_batch_fails_each_of_its_items_and_no_other() -> None:
    async def process(requests: Sequence[Request[int]]) -> list[int]:
        if any(request.item < 0 for request in requests):
            raise ValueError("negative")
        return [request.item for request in requests]

    batcher: Batcher[int, int] = Batcher(process, max_batch=10)
    failed = await asyncio.gather(batcher.add(-1), return_exceptions=True)
    assert isinstance(failed[0], ValueError)
    assert await batcher.add(3) == 3
