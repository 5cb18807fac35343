"""A Taskport client under load: submits tasks, polls them to the end, pages through lists.

Against `make run`:      uv run --group bench locust -f bench/locustfile.py --host http://127.0.0.1:8000
Against the nginx stack: uv run --group bench locust -f bench/locustfile.py --host http://127.0.0.1:8080
Headless and bounded:    ... --headless --users 20 --spawn-rate 10 --run-time 1m
TASKPORT_API_KEY sends a bearer key (the compose stacks require one).
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task

FINISHED = {"SUCCEEDED", "FAILED", "CANCELLED"}


class TaskportUser(HttpUser):
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        key = os.environ.get("TASKPORT_API_KEY")
        if key:
            self.client.headers["Authorization"] = f"Bearer {key}"
        self.pending: list[str] = []

    @task(5)
    def submit(self) -> None:
        kind, payload = random.choice(
            [
                ("echo", {"n": random.randint(0, 10**6)}),
                ("predict", {"features": {"a": random.random(), "b": random.random()}}),
                ("sleep", {"seconds": 0.05}),
            ]
        )
        with self.client.post(
            "/v1/tasks",
            json={"kind": kind, "payload": payload},
            name="POST /v1/tasks",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(f"submit answered {response.status_code}: {response.text[:200]}")
                return
            self.pending.append(response.json()["id"])

    @task(5)
    def poll(self) -> None:
        if not self.pending:
            return
        task_id = self.pending[0]
        with self.client.get(
            f"/v1/tasks/{task_id}", name="GET /v1/tasks/{id}", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"poll answered {response.status_code}")
                return
            if response.json()["status"] in FINISHED:
                self.pending.pop(0)

    @task(1)
    def list_pages(self) -> None:
        cursor = None
        for _ in range(3):
            params = {"limit": 20, **({"cursor": cursor} if cursor else {})}
            response = self.client.get("/v1/tasks", params=params, name="GET /v1/tasks")
            if response.status_code != 200:
                return
            cursor = response.json()["next_cursor"]
            if cursor is None:
                return
