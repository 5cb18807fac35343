"""The worker's limit on the runs of a consumer of several queues."""

from __future__ import annotations

import asyncio
from typing import Any

from entrypoints.worker.runtime import at_most
from tests.polling import eventually


async def test_a_worker_of_several_queues_runs_no_more_than_its_concurrency() -> None:
    running = 0
    peak = 0
    release = asyncio.Event()

    async def run(delivery: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    limited = at_most(2, run)
    runs = [asyncio.create_task(limited(object())) for _ in range(5)]  # type: ignore[arg-type]
    await eventually(lambda: running == 2)
    release.set()
    await asyncio.gather(*runs)
    assert peak == 2
