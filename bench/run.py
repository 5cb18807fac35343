"""Runs the benchmarks and writes bench/results/DATE-MODE.md and bench/results/latest.json.

    python -m bench.run            # the full run (`make bench`)
    python -m bench.run --quick    # the same shape with small counts (`make bench-quick`)
    python -m bench.run --only submit e2e_celery   # some scenarios, for a look while tuning

A run of some scenarios writes DATE-MODE-partial.md only: latest.json and latest.md stay
the last run of them all, which the README's table shows.

Exits 1 when a scenario failed (the others are still measured and written).
"""

from __future__ import annotations

import argparse
import json
import platform
import string
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import scenarios
from bench.infra import ROOT, settle
from bench.report import markdown, median_run, summary

SCENARIOS: dict[str, Callable[[scenarios.Counts], dict[str, Any]]] = {
    "submit": scenarios.submit_throughput,
    "e2e_taskport_pg_rabbitmq": scenarios.e2e_taskport_pg_rabbitmq,
    "e2e_celery": scenarios.e2e_celery,
    "e2e_dramatiq": scenarios.e2e_dramatiq,
    "e2e_taskport_sqlite": scenarios.e2e_taskport_sqlite,
    "e2e_taskport_mongo": scenarios.e2e_taskport_mongo,
    "e2e_taskport_pubsub": scenarios.e2e_taskport_pubsub,
    "latency": scenarios.latency,
    "list": scenarios.list_latency,
    "backlog": scenarios.backlog_drain,
}
COMPARED = ("submit", "e2e_taskport_pg_rabbitmq", "e2e_dramatiq", "e2e_celery")
"""The scenarios measured against baselines: run ``rounds`` times, taking turns, first;
each reports its median run, so a drift of the machine in the middle of the run weighs on
every system alike."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small counts (under 3 minutes)")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="these scenarios")
    args = parser.parse_args()
    counts = scenarios.QUICK if args.quick else scenarios.FULL
    mode = "quick" if args.quick else "full"
    started = time.monotonic()
    chosen = [name for name in SCENARIOS if not args.only or name in args.only]
    compared = [name for name in chosen if name in COMPARED]
    plan = [*(compared * counts.rounds), *(name for name in chosen if name not in COMPARED)]
    runs: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    for name in plan:
        if name in failed:
            continue
        try:
            settle()
            runs.setdefault(name, []).append(SCENARIOS[name](counts))
        except Exception as exc:
            scenarios.log(f"{name} FAILED: {exc}")
            traceback.print_exc()
            failed[name] = str(exc)[:2000]
    measured = {name: median_run(figures) for name, figures in runs.items() if name not in failed}
    now = datetime.now(UTC)
    results = {
        "date": now.isoformat(timespec="seconds"),
        "mode": mode,
        "duration_seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": psutil.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "counts": counts.__dict__,
        **summary(measured, counts),
        "failed": failed,
        "measured": measured,
    }
    folder = ROOT / "bench" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    table = markdown(results)
    dated = _dated(folder, f"{now:%Y-%m-%d}-{mode}{'-partial' if args.only else ''}")
    dated.write_text(table)
    if not args.only:
        (folder / "latest.md").write_text(table)
        (folder / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table, flush=True)
    scenarios.log(f"written to {dated.relative_to(ROOT)} in {results['duration_seconds']:.0f}s")
    if failed:
        raise SystemExit(1)


def _dated(folder: Path, stem: str) -> Path:
    """``folder/stem.md``, or for a later run of the same day ``stem-b.md``, ``stem-c.md``
    and so on: a run never replaces the record of an earlier one."""
    for suffix in ["", *(f"-{letter}" for letter in string.ascii_lowercase[1:])]:
        path = folder / f"{stem}{suffix}.md"
        if not path.exists():
            return path
    raise SystemExit(f"{folder}: every name for another run of {stem} is taken")


if __name__ == "__main__":
    main()
