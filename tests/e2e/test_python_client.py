"""The Python client against a served API: the async client on the in-process app, the
sync one on ``taskport serve``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from taskport_client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidRequest,
    NewTask,
    NotFound,
    TaskCancelled,
    TaskFailed,
    Unauthorized,
    Unreachable,
    WaitTimedOut,
)

from tests.e2e.conftest import ApiFactory
from tests.e2e.server import ServerProcess, free_port, serving_embedded

KEY = "alice-key-0123456789"


@pytest.fixture
async def taskport(api_factory: ApiFactory) -> AsyncClient:
    return AsyncClient(http=await api_factory())


async def test_a_submitted_task_s_result_is_awaited(taskport: AsyncClient) -> None:
    task = await taskport.submit("echo", {"hello": "world"})
    assert (task.kind, task.status, task.queue) == ("echo", "QUEUED", "default")
    assert task.created_at.tzinfo is not None
    assert await taskport.result(task.id, timeout=10) == {"hello": "world"}
    done = await taskport.get(task.id)
    assert (done.status, done.finished, done.attempts) == ("SUCCEEDED", True, 1)
    assert done.finished_at is not None and done.finished_at >= done.created_at


async def test_a_submit_with_a_key_given_twice_makes_one_task(taskport: AsyncClient) -> None:
    first = await taskport.submit("echo", {"n": 1}, idempotency_key="order-42")
    again = await taskport.submit("echo", {"n": 1}, idempotency_key="order-42")
    assert again.id == first.id
    with pytest.raises(Conflict) as refused:
        await taskport.submit("echo", {"n": 2}, idempotency_key="order-42")
    assert refused.value.status == 409


async def test_a_failed_task_raises_with_its_error(taskport: AsyncClient) -> None:
    task = await taskport.submit("fail", {"message": "boom", "permanent": True})
    with pytest.raises(TaskFailed) as failed:
        await taskport.result(task.id, timeout=10)
    assert failed.value.task.status == "FAILED"
    assert failed.value.task.error is not None
    assert failed.value.task.error["message"] == "boom"


async def test_a_cancelled_task_raises_and_retried_runs(taskport: AsyncClient) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    task = await taskport.submit("echo", {"n": 1}, run_at=later)
    assert task.status == "SCHEDULED" and task.run_at == later
    assert (await taskport.cancel(task.id)).status == "CANCELLED"
    with pytest.raises(TaskCancelled):
        await taskport.result(task.id, timeout=1)
    with pytest.raises(Conflict):
        await taskport.cancel(task.id)
    assert (await taskport.retry(task.id)).status == "QUEUED"
    assert await taskport.result(task.id, timeout=10) == {"n": 1}
    await taskport.delete(task.id)
    with pytest.raises(NotFound):
        await taskport.get(task.id)


async def test_a_wait_ends_with_its_timeout_and_the_task_as_it_is(taskport: AsyncClient) -> None:
    task = await taskport.submit("echo", run_at=datetime.now(UTC) + timedelta(hours=1))
    assert (await taskport.wait(task.id, timeout=0.2)).status == "SCHEDULED"
    with pytest.raises(WaitTimedOut) as timed_out:
        await taskport.result(task.id, timeout=0)
    assert isinstance(timed_out.value, TimeoutError)
    assert timed_out.value.task.status == "SCHEDULED"


async def test_the_tasks_are_read_page_after_page(taskport: AsyncClient) -> None:
    submitted = await taskport.submit_many(
        [NewTask("echo", {"n": n}, run_at=datetime.now(UTC) + timedelta(hours=1)) for n in range(5)]
    )
    assert [task.payload for task in submitted] == [{"n": n} for n in range(5)]
    await taskport.submit("sleep", {"seconds": 0})
    listed = [task.id async for task in taskport.tasks(kind="echo", page_size=2)]
    assert listed == [task.id for task in reversed(submitted)]
    scheduled = [task async for task in taskport.tasks(status=["SCHEDULED"], page_size=2)]
    assert len(scheduled) == 5


async def test_many_tasks_are_cancelled_and_retried_at_once(taskport: AsyncClient) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    tasks = await taskport.submit_many([NewTask("echo", run_at=later) for _ in range(3)])
    cancelled = await taskport.cancel_all(status="SCHEDULED", kind="echo")
    assert sorted(cancelled) == sorted(task.id for task in tasks)
    assert await taskport.retry_all(status="CANCELLED") == cancelled
    assert (await taskport.stats())["by_status"].get("CANCELLED", 0) == 0


async def test_refusals_raise_with_the_problem(taskport: AsyncClient) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await taskport.submit("no-such-kind")
    assert refused.value.status == 422
    assert refused.value.type.endswith("unknown-kind")
    with pytest.raises(NotFound):
        await taskport.get(str(uuid.uuid4()))
    with pytest.raises(InvalidRequest):
        await taskport.get("not-an-id")


async def test_schedules_are_created_listed_paused_and_deleted(taskport: AsyncClient) -> None:
    nightly = await taskport.create_schedule(
        "echo", "0 3 * * *", {"n": 1}, timezone="Europe/Paris", name="nightly"
    )
    assert (nightly.name, nightly.timezone, nightly.paused) == ("nightly", "Europe/Paris", False)
    assert nightly.next_run_at > datetime.now(UTC) and nightly.last_run_at is None
    hourly = await taskport.create_schedule("echo", "0 * * * *", paused=True)
    assert hourly.paused and hourly.name is None
    with pytest.raises(Conflict):
        await taskport.create_schedule("echo", "0 4 * * *", name="nightly")
    with pytest.raises(InvalidRequest):
        await taskport.create_schedule("echo", "every day")
    listed = [schedule.id async for schedule in taskport.schedules(page_size=1)]
    assert listed == [hourly.id, nightly.id]
    assert (await taskport.pause_schedule(nightly.id)).paused
    assert not (await taskport.resume_schedule(nightly.id)).paused
    await taskport.delete_schedule(nightly.id)
    with pytest.raises(NotFound):
        await taskport.get_schedule(nightly.id)
    assert (await taskport.get_schedule(hourly.id)).cron == "0 * * * *"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"TASKPORT_API_KEYS": f"alice:{KEY}"}
    with serving_embedded(tmp_path_factory.mktemp("client"), env) as server:
        yield server


def test_the_blocking_client_submits_and_reads_results(served: ServerProcess) -> None:
    with Client(served.base_url, api_key=KEY) as taskport:
        task = taskport.submit("echo", {"hello": "world"})
        assert taskport.result(task.id, timeout=10) == {"hello": "world"}
        assert task.id in [listed.id for listed in taskport.tasks(kind="echo")]
        with pytest.raises(TaskFailed):
            taskport.result(taskport.submit("fail", {"permanent": True}).id, timeout=10)
        with pytest.raises(NotFound):
            taskport.get(str(uuid.uuid4()))


def test_the_server_and_key_come_from_the_environment_as_for_the_command_line(
    served: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKPORT_URL", served.base_url)
    monkeypatch.setenv("TASKPORT_API_KEY", KEY)
    with Client() as taskport:
        assert "echo" in [kind["name"] for kind in taskport.kinds()]
        [worker] = taskport.workers()
        assert (worker["status"], worker["queues"]) == ("alive", ["default"])


def test_the_blocking_client_needs_a_known_key(served: ServerProcess) -> None:
    with Client(served.base_url, api_key="wrong") as taskport, pytest.raises(Unauthorized):
        taskport.stats()


def test_a_server_that_cannot_be_reached_is_unreachable_once_retries_end() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", retry_for=0.3) as taskport,
        pytest.raises(Unreachable),
    ):
        taskport.submit("echo")
