"""Locust, headless and bounded, against a real server: no request may fail."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from tests.e2e.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


async def test_locust_runs_twenty_seconds_without_a_failure(tmp_path: Path) -> None:
    server = ServerProcess(
        {"TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}"}, tmp_path / "serve.log"
    )
    await server.start()
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [
                "locust",
                "-f",
                str(ROOT / "bench" / "locustfile.py"),
                "--headless",
                "--host",
                server.base_url,
                "--users",
                "10",
                "--spawn-rate",
                "10",
                "--run-time",
                "20s",
                "--stop-timeout",
                "5",
                "--only-summary",
                "--csv",
                str(tmp_path / "load"),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    totals = (tmp_path / "load_stats.csv").read_text().splitlines()
    aggregated = next(line for line in totals if ",Aggregated," in line).split(",")
    requests, failures = int(aggregated[2]), int(aggregated[3])
    assert requests > 100
    assert failures == 0
