"""The Prometheus metrics of a process, fed directly."""

from __future__ import annotations

from datetime import timedelta

from adapters.observability.prometheus import PrometheusMetrics
from application.ports.task_repository import TaskStats
from application.use_cases.get_stats import Stats
from application.use_cases.observe_deployment import DeploymentStats
from domain.values import TaskStatus


def stats(counts: dict[tuple[TaskStatus, str], int]) -> Stats:
    return Stats(tasks=TaskStats(counts, None), oldest_queued_age=None, outbox_backlog=0)


def observe(metrics: PrometheusMetrics, stats: Stats) -> None:
    """A pass of the statistics in the process holding their lease."""
    metrics.observe_deployment(DeploymentStats(stats, schedule_lag=None))


def stored(metrics: PrometheusMetrics, status: str, kind: str) -> float | None:
    return metrics.registry.get_sample_value("taskport_tasks", {"status": status, "kind": kind})


def test_stored_tasks_read_zero_in_every_status_of_a_kind_once_seen() -> None:
    """A count that falls to zero reads 0, not a series gone: a sum over statuses or kinds
    stays a number, and a graph goes down to 0 instead of stopping."""
    metrics = PrometheusMetrics()
    observe(metrics, stats({(TaskStatus.QUEUED, "echo"): 3}))
    assert stored(metrics, "QUEUED", "echo") == 3
    assert stored(metrics, "FAILED", "echo") == 0
    observe(metrics, stats({(TaskStatus.SUCCEEDED, "echo"): 3}))
    assert stored(metrics, "QUEUED", "echo") == 0
    assert stored(metrics, "SUCCEEDED", "echo") == 3
    observe(metrics, stats({}))  # pruned, say
    assert {status.value: stored(metrics, status.value, "echo") for status in TaskStatus} == {
        status.value: 0 for status in TaskStatus
    }


def test_each_queue_counts_its_tasks_in_every_status_zero_included() -> None:
    metrics = PrometheusMetrics()

    def in_queue(queue: str, status: str) -> float | None:
        labels = {"queue": queue, "status": status}
        return metrics.registry.get_sample_value("taskport_queue_tasks", labels)

    by_queue = {(TaskStatus.QUEUED, "images"): 4, (TaskStatus.SUCCEEDED, "default"): 2}
    observe(metrics, Stats(TaskStats({}, None, by_queue), oldest_queued_age=None, outbox_backlog=0))
    assert (in_queue("images", "QUEUED"), in_queue("images", "RUNNING")) == (4, 0)
    assert in_queue("default", "SUCCEEDED") == 2
    observe(metrics, stats({}))  # the queue drained and its tasks pruned
    assert in_queue("images", "QUEUED") == 0


def test_each_queue_reads_how_long_its_oldest_task_has_waited_zero_once_none_waits() -> None:
    metrics = PrometheusMetrics()

    def waited(queue: str) -> float | None:
        return metrics.registry.get_sample_value("taskport_queue_wait_seconds", {"queue": queue})

    ages = {"images": timedelta(seconds=90), "default": timedelta(seconds=2)}
    observe(metrics, Stats(TaskStats({}, None), timedelta(seconds=90), 0, ages))
    assert (waited("images"), waited("default")) == (90, 2)
    observe(metrics, stats({}))  # drained
    assert (waited("images"), waited("default")) == (0, 0)
