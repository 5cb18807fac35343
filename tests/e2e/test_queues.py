"""Named queues through HTTP: a task goes to the queue it names, and only the workers that
take that queue run it."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx

from tests.e2e.conftest import ApiFactory, wait_for_status
from tests.rabbitmq import broker_url

QUEUES = ["default", "images"]


async def test_a_task_waits_on_its_queue_for_a_worker_that_takes_it(
    api_factory: ApiFactory, tmp_path: Path, rabbitmq_vhost: str
) -> None:
    """Two processes on one database and one broker: a worker of the default queue leaves
    the task of "images" alone, and a worker of "images", started later, runs it."""
    shared = {
        "storage_url": f"sqlite:///{tmp_path / 'taskport.db'}",
        "broker_url": broker_url(rabbitmq_vhost),
        "queues": QUEUES,
        "embedded_worker": True,
    }
    defaults: httpx.AsyncClient = await api_factory(**shared, worker_queues=["default"])
    image = (await defaults.post("/v1/tasks", json={"kind": "echo", "queue": "images"})).json()
    assert image["queue"] == "images"
    plain = (await defaults.post("/v1/tasks", json={"kind": "echo"})).json()
    assert plain["queue"] == "default"
    await wait_for_status(defaults, plain["id"], "SUCCEEDED")
    assert (await defaults.get(f"/v1/tasks/{image['id']}")).json()["status"] == "QUEUED"
    stats = (await defaults.get("/v1/stats")).json()
    backlog = stats["by_queue"]
    assert (backlog["images"]["QUEUED"], backlog["default"]["SUCCEEDED"]) == (1, 1)
    # Only "images" holds a task waiting.
    assert list(stats["oldest_queued_age_seconds_by_queue"]) == ["images"]
    assert stats["oldest_queued_age_seconds_by_queue"]["images"] >= 0
    await api_factory(**shared, worker_queues=["images"])
    await wait_for_status(defaults, image["id"], "SUCCEEDED")
    workers = (await defaults.get("/v1/workers")).json()["items"]
    assert sorted(worker["queues"] for worker in workers) == [["default"], ["images"]]


async def test_the_in_process_queue_runs_only_the_queues_its_worker_takes(
    api_factory: ApiFactory,
) -> None:
    api: httpx.AsyncClient = await api_factory(queues=QUEUES, worker_queues=["images"])
    plain = (await api.post("/v1/tasks", json={"kind": "echo"})).json()
    image = (await api.post("/v1/tasks", json={"kind": "echo", "queue": "images"})).json()
    await wait_for_status(api, image["id"], "SUCCEEDED")
    assert (await api.get(f"/v1/tasks/{plain['id']}")).json()["status"] == "QUEUED"


async def test_every_queue_the_worker_takes_is_served(api_factory: ApiFactory) -> None:
    api: httpx.AsyncClient = await api_factory(queues=QUEUES)
    submitted = [
        (await api.post("/v1/tasks", json={"kind": "echo", "payload": queue, "queue": queue}))
        for queue in QUEUES
    ]
    for response in submitted:
        assert response.status_code == 201
        done = await wait_for_status(api, response.json()["id"], "SUCCEEDED")
        assert done["result"] == done["queue"]


async def test_a_queue_the_deployment_lacks_is_refused_with_the_ones_it_has(
    api_factory: ApiFactory,
) -> None:
    api: httpx.AsyncClient = await api_factory(queues=QUEUES)
    response = await api.post("/v1/tasks", json={"kind": "echo", "queue": "videos"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("unknown-queue")
    assert problem["known_queues"] == QUEUES
    batch = await api.post(
        "/v1/tasks/batch", json={"tasks": [{"kind": "echo"}, {"kind": "echo", "queue": "videos"}]}
    )
    assert batch.status_code == 422
    assert [error["index"] for error in batch.json()["errors"]] == [1]
    schedule = await api.post(
        "/v1/schedules", json={"cron": "@daily", "kind": "echo", "queue": "videos"}
    )
    assert schedule.status_code == 422
    assert schedule.json()["known_queues"] == QUEUES
    listed = await api.get("/v1/tasks")
    assert listed.json()["items"] == []


async def test_a_queue_name_that_cannot_name_a_queue_is_a_bad_request(
    api_factory: ApiFactory,
) -> None:
    api: httpx.AsyncClient = await api_factory(queues=QUEUES)
    for name in ["", "Images", "a.b", "x" * 41, 7, None]:
        response = await api.post("/v1/tasks", json={"kind": "echo", "queue": name})
        assert response.status_code == 422, name
        assert response.json()["errors"][0]["location"] == ["body", "queue"]


async def test_a_repeat_naming_another_queue_is_another_request(api_factory: ApiFactory) -> None:
    api: httpx.AsyncClient = await api_factory(queues=QUEUES)
    key = {"Idempotency-Key": "resize-42"}
    first = await api.post("/v1/tasks", json={"kind": "echo", "queue": "images"}, headers=key)
    again = await api.post("/v1/tasks", json={"kind": "echo", "queue": "images"}, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other = await api.post("/v1/tasks", json={"kind": "echo"}, headers=key)
    assert other.status_code == 409


async def test_a_schedule_submits_its_tasks_to_its_queue(api_factory: ApiFactory) -> None:
    api: httpx.AsyncClient = await api_factory(queues=QUEUES, worker_queues=["default"])
    created = await api.post(
        "/v1/schedules", json={"cron": "* * * * *", "kind": "echo", "queue": "images"}
    )
    assert created.status_code == 201
    assert created.json()["queue"] == "images"
    listed = (await api.get("/v1/schedules")).json()["items"]
    assert [schedule["queue"] for schedule in listed] == ["images"]


async def test_the_task_list_filters_by_queue_with_a_cursor_bound_to_it(
    api_factory: ApiFactory,
) -> None:
    # The worker takes neither queue's tasks away: they stay QUEUED where they were put.
    api: httpx.AsyncClient = await api_factory(queues=[*QUEUES, "video"], worker_queues=["video"])
    for n in range(5):
        queue = "images" if n % 2 else "default"
        await api.post("/v1/tasks", json={"kind": "echo", "payload": n, "queue": queue})
    page = (await api.get("/v1/tasks", params={"queue": "images", "limit": 1})).json()
    rest = await api.get("/v1/tasks", params={"queue": "images", "cursor": page["next_cursor"]})
    images = [task["payload"] for task in [*page["items"], *rest.json()["items"]]]
    assert (images, rest.json()["next_cursor"]) == ([3, 1], None)
    plain = (await api.get("/v1/tasks", params={"queue": "default"})).json()["items"]
    assert [task["payload"] for task in plain] == [4, 2, 0]
    elsewhere = await api.get(
        "/v1/tasks", params={"queue": "default", "cursor": page["next_cursor"]}
    )
    assert elsewhere.status_code == 400  # a cursor of another queue's pages
    none = await api.get("/v1/tasks", params={"queue": "gone"})  # a queue no task is in
    assert none.json() == {"items": [], "next_cursor": None}
    invalid = await api.get("/v1/tasks", params={"queue": "Images!"})
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"


async def test_a_queue_s_limit_leaves_the_worker_s_other_slots_to_the_other_queues(
    api_factory: ApiFactory,
) -> None:
    """A worker of two slots, "images" limited to one: slow tasks of "images" run one at a
    time, and the default queue's tasks run in the other slot meanwhile, where without the
    limit two slow tasks would hold both slots."""
    api: httpx.AsyncClient = await api_factory(
        queues=QUEUES, worker_queues=["default", "images:1"], worker_concurrency=2
    )
    sleep = {"kind": "sleep", "payload": {"seconds": 0.5}, "queue": "images"}
    slow = [(await api.post("/v1/tasks", json=sleep)).json() for _ in range(3)]
    quick = [(await api.post("/v1/tasks", json={"kind": "echo"})).json() for _ in range(3)]
    for task in [*quick, *slow]:
        await wait_for_status(api, task["id"], "SUCCEEDED")
    quick_runs = [(await api.get(f"/v1/tasks/{task['id']}")).json() for task in quick]
    slow_runs = [(await api.get(f"/v1/tasks/{task['id']}")).json() for task in slow]
    spans = sorted((run["started_at"], run["finished_at"]) for run in slow_runs)
    assert all(ended <= started for (_, ended), (started, _) in itertools.pairwise(spans))
    assert max(run["finished_at"] for run in quick_runs) < spans[0][1]
    [worker] = (await api.get("/v1/workers")).json()["items"]
    assert (worker["queues"], worker["queue_limits"]) == (QUEUES, {"images": 1})
