"""The HTTP load generator, run as a process of its own; prints one JSON line of figures.

    python -m bench.loadgen requests URL --count N --connections 32 --body JSON [--status 201]
    python -m bench.loadgen batches URL --count N --batch 500 --connections 4 --body JSON
    python -m bench.loadgen latency URL --count N --pause 0.02
    python -m bench.loadgen pages URL [URL ...] --count N --limit 50

Counts are bounded: every mode sends exactly what it is told and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import aiohttp
import uvloop


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _send_all(
    session: aiohttp.ClientSession,
    url: str,
    bodies: list[bytes],
    connections: int,
    expect: int,
) -> tuple[list[float], dict[int, int], str | None]:
    """Sends every body with ``connections`` requests in flight; latencies, statuses and
    the first unexpected answer."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    unexpected: list[str] = []
    queue = iter(bodies)
    headers = {"Content-Type": "application/json"}

    async def connection() -> None:
        for body in queue:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                text = await response.read()
            latencies.append(time.perf_counter() - started)
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.status != expect and not unexpected:
                unexpected.append(f"{response.status}: {text[:300]!r}")

    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies, statuses, unexpected[0] if unexpected else None


def _session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, force_close=False),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def requests_mode(args: argparse.Namespace) -> dict[str, Any]:
    """``count`` POSTs of the same body: requests per second and latency."""
    body = args.body.encode()
    async with _session(args.connections) as session:
        await _send_all(session, args.url, [body] * args.warmup, args.connections, args.status)
        started = time.perf_counter()
        latencies, statuses, unexpected = await _send_all(
            session, args.url, [body] * args.count, args.connections, args.status
        )
        elapsed = time.perf_counter() - started
    return {
        "requests": args.count,
        "seconds": elapsed,
        "rps": args.count / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "statuses": statuses,
        "errors": args.count - statuses.get(args.status, 0),
        "unexpected": unexpected,
        "started_at": time.time() - elapsed,
    }


async def batches_mode(args: argparse.Namespace) -> dict[str, Any]:
    """``count`` tasks submitted in batches of ``batch`` (the batch endpoint)."""
    item = json.loads(args.body)
    sizes = [args.batch] * (args.count // args.batch)
    if args.count % args.batch:
        sizes.append(args.count % args.batch)
    bodies = [json.dumps({"tasks": [item] * size}).encode() for size in sizes]
    started_at = time.time()
    async with _session(args.connections) as session:
        started = time.perf_counter()
        _, statuses, unexpected = await _send_all(
            session, args.url, bodies, args.connections, args.status
        )
        elapsed = time.perf_counter() - started
    return {
        "tasks": args.count,
        "seconds": elapsed,
        "tasks_per_second": args.count / elapsed,
        "statuses": statuses,
        "errors": len(bodies) - statuses.get(args.status, 0),
        "unexpected": unexpected,
        "started_at": started_at,
    }


async def latency_mode(args: argparse.Namespace) -> dict[str, Any]:
    """One task at a time: submit a ``bench.stamp`` task, wait for its result, and take
    the time from just before the POST to the moment its handler started (the handler's
    own clock). The task is looked at only ``--first-look`` seconds after the submit, then
    every 5 ms: a poll while the task is on its way would take the API's time from it, and
    the figure does not depend on when the result is read."""
    delays: list[float] = []
    body = json.dumps({"kind": "bench.stamp", "payload": {}}).encode()
    headers = {"Content-Type": "application/json"}
    async with _session(2) as session:
        for index in range(args.warmup + args.count):
            sent = time.time()
            async with session.post(args.url, data=body, headers=headers) as response:
                task = await response.json()
                if response.status != 201:
                    raise SystemExit(f"submit answered {response.status}: {task}")
            location = f"{args.url}/{task['id']}"
            deadline = time.monotonic() + 30
            await asyncio.sleep(args.first_look)
            while task["status"] != "SUCCEEDED":
                if time.monotonic() > deadline:
                    raise SystemExit(f"task {task['id']} not finished within 30s: {task}")
                await asyncio.sleep(0.005)
                async with session.get(location) as response:
                    task = await response.json()
            if index >= args.warmup:
                delays.append(task["result"]["started"] - sent)
            await asyncio.sleep(args.pause)
    return {
        "tasks": args.count,
        "p50_ms": percentile(delays, 0.50) * 1000,
        "p99_ms": percentile(delays, 0.99) * 1000,
        "max_ms": max(delays) * 1000,
        "mean_ms": statistics.fmean(delays) * 1000,
    }


async def pages_mode(args: argparse.Namespace) -> dict[str, Any]:
    """List-page latency of each URL, asked in turns (one request each, then again), so
    that every URL is measured in the same moments: ``count`` first pages, then ``count``
    pages walked through ``next_cursor`` (from the start again when the list ends).
    Figures by URL."""

    async def page(session: aiohttp.ClientSession, url: str) -> tuple[float, str | None]:
        started = time.perf_counter()
        async with session.get(url) as response:
            answer = await response.json()
            if response.status != 200:
                raise SystemExit(f"list answered {response.status}: {answer}")
        return time.perf_counter() - started, answer["next_cursor"]

    firsts = {url: f"{url}?limit={args.limit}" for url in args.urls}
    first_pages: dict[str, list[float]] = {url: [] for url in args.urls}
    walked: dict[str, list[float]] = {url: [] for url in args.urls}
    cursors: dict[str, str | None] = dict.fromkeys(args.urls)
    async with _session(len(args.urls)) as session:
        for index in range(args.warmup + args.count):
            for url, first in firsts.items():
                elapsed, _ = await page(session, first)
                if index >= args.warmup:
                    first_pages[url].append(elapsed)
        for _ in range(args.count):
            for url, first in firsts.items():
                cursor = cursors[url]
                elapsed, cursors[url] = await page(
                    session, f"{first}&cursor={cursor}" if cursor else first
                )
                walked[url].append(elapsed)
    return {
        url: {
            "pages": args.count,
            "limit": args.limit,
            "first_p50_ms": percentile(first_pages[url], 0.50) * 1000,
            "first_p99_ms": percentile(first_pages[url], 0.99) * 1000,
            "walk_p50_ms": percentile(walked[url], 0.50) * 1000,
            "walk_p99_ms": percentile(walked[url], 0.99) * 1000,
        }
        for url in args.urls
    }


MODES = {
    "requests": requests_mode,
    "batches": batches_mode,
    "latency": latency_mode,
    "pages": pages_mode,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("urls", nargs="+", metavar="url", help="one (pages: one or more)")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--body", default='{"kind": "echo", "payload": {}}')
    parser.add_argument("--status", type=int, default=201)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--pause", type=float, default=0.02)
    parser.add_argument("--first-look", type=float, default=0.05)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    args.url = args.urls[0]
    print(json.dumps(uvloop.run(MODES[args.mode](args))), flush=True)


if __name__ == "__main__":
    main()
