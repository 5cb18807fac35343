"""The deployment's statistics, counted by one process at a time: processes sharing one
storage, wired by the real container with a fake clock."""

from __future__ import annotations

from dependency_injector import providers
from prometheus_client import generate_latest

from adapters.storage.memory import MemoryStorage
from domain.values import TaskStatus
from entrypoints.container import Container, create_container
from entrypoints.settings import Settings
from tests.factories import FakeClock, make_task


def process(storage: MemoryStorage, clock: FakeClock) -> Container:
    container = create_container(Settings(storage_url="memory://", stats_interval_seconds=15))
    container.storage.override(providers.Object(storage))
    container.clock.override(providers.Object(clock))
    return container


def stored(container: Container, status: str) -> float | None:
    labels = {"status": status, "kind": "echo"}
    return container.metrics().registry.get_sample_value("taskport_tasks", labels)


def backlog(container: Container) -> float | None:
    return container.metrics().registry.get_sample_value("taskport_outbox_backlog")


async def observe(container: Container) -> bool:
    """One pass of the process's statistics loop; whether it counted."""
    observed = await container.observe_deployment()()
    container.metrics().observe_deployment(observed)
    return observed is not None


async def test_one_process_counts_the_tasks_and_the_others_leave_the_gauges_out() -> None:
    storage, clock = MemoryStorage(), FakeClock()
    async with storage.unit_of_work() as uow:
        await uow.tasks.add(make_task(owner="alice"))
        await uow.tasks.add(make_task(owner="bob"))
        await uow.commit()
    first, second = process(storage, clock), process(storage, clock)
    assert await observe(first)
    assert not await observe(second)
    clock.advance(seconds=15)
    assert (await observe(first), await observe(second)) == (True, False)
    assert stored(first, TaskStatus.QUEUED.value) == 2  # every owner's
    assert stored(second, TaskStatus.QUEUED.value) is None
    scraped = generate_latest(second.metrics().registry).decode()
    assert "taskport_tasks_submitted_total" in scraped  # its own metrics stay
    for gauge in ("taskport_tasks", "taskport_queue_tasks", "taskport_queue_lag_seconds",
                  "taskport_queue_wait_seconds", "taskport_outbox_backlog",
                  "taskport_schedule_lag_seconds"):  # fmt: skip
        assert f"\n{gauge}{{" not in scraped and f"\n{gauge} " not in scraped


async def test_another_process_counts_once_the_holder_stops_or_stops_renewing() -> None:
    storage, clock = MemoryStorage(), FakeClock()
    first, second, third = (process(storage, clock) for _ in range(3))
    assert await observe(first)
    await first.observe_deployment().hand_over()
    assert await observe(second)
    assert not await observe(first)
    assert backlog(first) is None  # left out, not a stale count
    clock.advance(seconds=44)  # the holder's lease is three of its passes: 45 s
    assert not await observe(third)
    clock.advance(seconds=1)
    assert await observe(third)
    assert backlog(third) == 0
