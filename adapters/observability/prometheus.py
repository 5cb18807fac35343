"""Prometheus metrics of a Taskport process, fed by committed domain events, HTTP traffic
and periodic storage statistics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from application.ports.schedule_listener import SkipReason
from application.use_cases.get_stats import Stats
from application.use_cases.observe_deployment import DeploymentStats
from domain import events
from domain.values import TaskStatus

RUN_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
HTTP_SECONDS_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
    30,
    60,
)
"""prometheus_client's default buckets, and on to the longest wait of a read waiting for its
task (a minute)."""
MAX_TRACKED_ATTEMPTS = 100_000
"""Attempts whose start is remembered to time them; past this, the oldest are forgotten."""

_OUTCOMES: dict[type[events.TaskEvent], str] = {
    events.TaskSucceeded: "succeeded",
    events.TaskFailed: "failed",
    events.TaskRetryScheduled: "retry",
    events.TaskCancelled: "cancelled",
    events.TaskQueued: "released",
}


class PrometheusMetrics:
    """One process's metrics in a registry of their own (never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.submitted = Counter(
            "taskport_tasks_submitted", "Tasks submitted", ["kind"], registry=registry
        )
        self.started = Counter(
            "taskport_tasks_started", "Attempts started", ["kind"], registry=registry
        )
        self.succeeded = Counter(
            "taskport_tasks_succeeded", "Tasks succeeded", ["kind"], registry=registry
        )
        self.failed = Counter(
            "taskport_tasks_failed", "Tasks failed for good", ["kind"], registry=registry
        )
        self.retried = Counter(
            "taskport_tasks_retry_scheduled",
            "Failed attempts to retry",
            ["kind"],
            registry=registry,
        )
        self.cancelled = Counter(
            "taskport_tasks_cancelled", "Tasks cancelled", ["kind"], registry=registry
        )
        self.run_seconds = Histogram(
            "taskport_task_run_duration_seconds",
            "Duration of an attempt, by how it ended",
            ["kind", "outcome"],
            buckets=RUN_SECONDS_BUCKETS,
            registry=registry,
        )
        self.http_requests = Counter(
            "taskport_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_seconds = Histogram(
            "taskport_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=HTTP_SECONDS_BUCKETS,
            registry=registry,
        )
        self.http_in_progress = Gauge(
            "taskport_http_requests_in_progress",
            "HTTP requests being answered (reads waiting for their task included)",
            registry=registry,
        )
        self.tasks = Gauge(
            "taskport_tasks",
            "Stored tasks by status and kind",
            ["status", "kind"],
            registry=None,
        )
        self.queue_tasks = Gauge(
            "taskport_queue_tasks",
            "Stored tasks by queue and status (QUEUED: the queue's backlog)",
            ["queue", "status"],
            registry=None,
        )
        self.queue_lag = Gauge(
            "taskport_queue_lag_seconds",
            "How long the oldest QUEUED task has waited since it was due (0 when none waits)",
            registry=None,
        )
        self.queue_wait = Gauge(
            "taskport_queue_wait_seconds",
            "How long the oldest QUEUED task of each queue has waited since it was due (0 "
            "when none waits)",
            ["queue"],
            registry=None,
        )
        self.outbox_backlog = Gauge(
            "taskport_outbox_backlog",
            "Messages committed but not yet marked sent (published ones are marked about "
            "20 ms after their publish)",
            registry=None,
        )
        self.schedule_submitted = Counter(
            "taskport_schedule_tasks_submitted",
            "Tasks submitted by schedules",
            ["kind"],
            registry=registry,
        )
        self.schedule_skipped = Counter(
            "taskport_schedule_occurrences_skipped",
            "Occurrences of schedules that could have no task, by why",
            ["kind", "reason"],
            registry=registry,
        )
        self.schedule_lag = Gauge(
            "taskport_schedule_lag_seconds",
            "How late the earliest due schedule is (0 when none is due)",
            registry=None,
        )
        self._deployment = _WhileHeld(
            self.tasks,
            self.queue_tasks,
            self.queue_lag,
            self.queue_wait,
            self.outbox_backlog,
            self.schedule_lag,
        )
        registry.register(self._deployment)
        self._children: dict[tuple[Counter | Histogram, tuple[str, ...]], Any] = {}
        """Children of the labelled metrics by metric and label values, kept: ``labels``
        looks them up at a cost every event and request would pay."""
        self._kinds_stored: set[str] = set()
        """The kinds of the stored tasks counted so far: a handful, those of the deployment."""
        self._queues_stored: set[str] = set()
        """The queues of the stored tasks counted so far: at most the deployment's 40."""
        self._started_at: dict[UUID, datetime] = {}
        """When the running attempt of each task started (a task runs one attempt at a time)."""

    def committed(self, recorded: Sequence[events.TaskEvent]) -> None:
        for event in recorded:
            match event:
                case events.TaskSubmitted():
                    self._child(self.submitted, event.kind).inc()
                case events.TaskStarted():
                    self._child(self.started, event.kind).inc()
                    self._remember_start(event)
                case events.TaskSucceeded():
                    self._child(self.succeeded, event.kind).inc()
                case events.TaskFailed():
                    self._child(self.failed, event.kind).inc()
                case events.TaskRetryScheduled():
                    self._child(self.retried, event.kind).inc()
                case events.TaskCancelled():
                    self._child(self.cancelled, event.kind).inc()
            self._time_attempt(event)

    def task_submitted(self, kind: str) -> None:
        """A schedule's task was created."""
        self._child(self.schedule_submitted, kind).inc()

    def occurrence_skipped(self, kind: str, reason: SkipReason) -> None:
        self._child(self.schedule_skipped, kind, reason).inc()

    def observe_deployment(self, observed: DeploymentStats | None) -> None:
        """The deployment's gauges (stored tasks, queues, outbox, schedules) as this process
        counted them; ``None`` when another process holds the statistics lease: they are
        then left out of this process's metrics, so that each has one source at a time."""
        if observed is None:
            self._deployment.held = False
            return
        self._set_stats(observed.stats)
        self._set_schedule_lag(observed.schedule_lag)
        # Last: a worker's metrics are scraped from a thread of their own, which must not
        # read the values of an earlier time this process held the lease.
        self._deployment.held = True

    def _set_schedule_lag(self, lag: timedelta | None) -> None:
        self.schedule_lag.set(lag.total_seconds() if lag is not None else 0)

    def http_started(self) -> None:
        self.http_in_progress.inc()

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """A request answered (or given up): counted, timed, and no longer in progress."""
        self.http_in_progress.dec()
        self._child(self.http_requests, method, route, str(status)).inc()
        self._child(self.http_seconds, method, route).observe(seconds)

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[(metric, labels)] = metric.labels(*labels)
        return child

    def _set_stats(self, stats: Stats) -> None:
        """Every status of every kind, and of every queue, stored since the process started
        has its count, 0 included: a series that vanished at zero would leave sums without a
        value and graphs cut short (and a scrape in between a clear and the new counts,
        none)."""
        counts = stats.tasks.counts
        self._kinds_stored.update(kind for _, kind in counts)
        for kind in self._kinds_stored:
            for status in TaskStatus:
                self.tasks.labels(status.value, kind).set(counts.get((status, kind), 0))
        by_queue, waits = stats.tasks.by_queue, stats.oldest_queued_age_by_queue
        self._queues_stored.update(queue for _, queue in by_queue)
        self._queues_stored.update(waits)
        for queue in self._queues_stored:
            for status in TaskStatus:
                self.queue_tasks.labels(queue, status.value).set(by_queue.get((status, queue), 0))
            waited = waits.get(queue)
            self.queue_wait.labels(queue).set(waited.total_seconds() if waited else 0)
        lag = stats.oldest_queued_age
        self.queue_lag.set(lag.total_seconds() if lag is not None else 0)
        self.outbox_backlog.set(stats.outbox_backlog)

    def _remember_start(self, event: events.TaskStarted) -> None:
        if len(self._started_at) >= MAX_TRACKED_ATTEMPTS:
            self._started_at.pop(next(iter(self._started_at)))
        self._started_at[event.task_id] = event.occurred_at

    def _time_attempt(self, event: events.TaskEvent) -> None:
        outcome = _OUTCOMES.get(type(event))
        if outcome is None:
            return
        started = self._started_at.pop(event.task_id, None)
        if started is not None:
            seconds = (event.occurred_at - started).total_seconds()
            self._child(self.run_seconds, event.kind, outcome).observe(max(seconds, 0.0))


class _WhileHeld(Collector):
    """Metrics collected only while ``held``: those of the whole deployment, which one
    process at a time counts."""

    def __init__(self, *metrics: Gauge) -> None:
        self._metrics = metrics
        self.held = False

    def collect(self) -> Iterable[Metric]:
        if not self.held:
            return
        for metric in self._metrics:
            yield from metric.collect()

    def describe(self) -> Iterable[Metric]:
        for metric in self._metrics:
            yield from metric.describe()
