"""Locust, headless and bounded, against a real server: no request may fail."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

from tests.e2e.test_server_process import free_port, taskport
from tests.polling import eventually

ROOT = Path(__file__).resolve().parents[2]


async def test_locust_runs_twenty_seconds_without_a_failure(tmp_path: Path) -> None:
    import httpx

    port = free_port()
    server = taskport(
        "serve",
        "--port",
        str(port),
        env={"TASKPORT_STORAGE_URL": f"sqlite:///{tmp_path / 'taskport.db'}"},
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def up() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, within=30)
        done = await asyncio.to_thread(
            subprocess.run,
            [
                "locust",
                "-f",
                str(ROOT / "bench" / "locustfile.py"),
                "--headless",
                "--host",
                f"http://127.0.0.1:{port}",
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
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    totals = (tmp_path / "load_stats.csv").read_text().splitlines()
    aggregated = next(line for line in totals if ",Aggregated," in line).split(",")
    requests, failures = int(aggregated[2]), int(aggregated[3])
    assert requests > 100
    assert failures == 0
