"""The JSON shapes of the HTTP API."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from application.ports.handlers import KindInfo
from application.use_cases.bulk_change import MAX_BULK_CHANGE, BulkChange, MatchingTasks
from application.use_cases.create_schedule import CreateSchedule
from application.use_cases.get_stats import Stats
from application.use_cases.list_workers import WorkerView
from application.use_cases.submit_task import SubmitTask
from application.use_cases.submit_task_batch import MAX_BATCH_SIZE
from domain.schedule import (
    MAX_CRON_LENGTH,
    MAX_EXPIRES_AFTER_SECONDS,
    MAX_TIMEZONE_LENGTH,
    SCHEDULE_NAME_PATTERN,
    Schedule,
    TaskTemplate,
)
from domain.task import KIND_PATTERN, MAX_CALLBACK_URL_LENGTH, Task
from domain.values import (
    DEFAULT_QUEUE,
    MAX_ATTEMPTS_LIMIT,
    MAX_TIMEOUT_SECONDS,
    QUEUE_PATTERN,
    TaskStatus,
)

# The fields of a task as a request describes it, for a task (TaskIn) and for the tasks
# of a schedule (ScheduleIn) alike.
Kind = Annotated[str, Field(min_length=1, max_length=100, examples=["echo"])]
Payload = Annotated[Any, Field(default_factory=dict, examples=[{"hello": "world"}])]


def _integral_number(value: object) -> object:
    """A JSON number with no fractional part is an integer, as JSON Schema counts it (the
    document's ``"type": "integer"``): ``3.0`` and ``3e0`` are 3."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Strict: "3", true or 3.5 is no number of attempts (pydantic would read "3" and true).
MaxAttempts = Annotated[
    int | None,
    Field(ge=1, le=MAX_ATTEMPTS_LIMIT, strict=True),
    BeforeValidator(_integral_number),
]
TimeoutSeconds = Annotated[float | None, Field(gt=0, le=MAX_TIMEOUT_SECONDS, strict=True)]
CallbackUrl = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=MAX_CALLBACK_URL_LENGTH,
        description=(
            "POST the outcome here each time the task finishes, through the http kind: its "
            "host must be allowed by TASKPORT_HTTP_ALLOWED_HOSTS"
        ),
        examples=["https://hooks.example.com/taskport"],
    ),
]


QueueName = Annotated[
    str,
    Field(
        pattern=QUEUE_PATTERN.pattern,
        description="the queue its run goes to: one of the deployment's (TASKPORT_QUEUES); "
        "only the workers that take it run the task",
        examples=[DEFAULT_QUEUE, "images"],
    ),
]


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    payload: Payload
    run_at: AwareDatetime | None = Field(
        default=None, description="start no earlier than this time (with a UTC offset)"
    )
    max_attempts: MaxAttempts = None
    timeout_seconds: TimeoutSeconds = None
    callback_url: CallbackUrl = None
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="start no attempt from this time on (with a UTC offset), after run_at: "
        "a task still waiting then fails as Expired, unrun, and a retry that would come "
        "later is not scheduled",
    )
    queue: QueueName = DEFAULT_QUEUE

    @field_validator("run_at", "expires_at", mode="before")
    @classmethod
    def _date_time_text(cls, value: object, info: ValidationInfo) -> object:
        # pydantic would read a number as seconds since 1970.
        if value is not None and not isinstance(value, str):
            raise ValueError(
                f"{info.field_name} is a date and time as text, like 2030-01-01T09:00:00Z"
            )
        return value

    def command(self, owner: str, idempotency_key: str | None) -> SubmitTask:
        return SubmitTask(
            owner=owner,
            kind=self.kind,
            payload=self.payload,
            run_at=self.run_at,
            max_attempts=self.max_attempts,
            timeout_seconds=self.timeout_seconds,
            idempotency_key=idempotency_key,
            callback_url=self.callback_url,
            expires_at=self.expires_at,
            queue=self.queue,
        )


IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
"""1-255 visible ASCII characters, in the Idempotency-Key header as in a batch item (matched
with ``fullmatch`` in Python, whose ``$`` also matches before a final newline)."""


IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


class TaskBatchItemIn(TaskIn):
    idempotency_key: str | None = Field(
        default=None,
        json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
        description="as the Idempotency-Key header of a single submit, for this item",
    )

    @field_validator("idempotency_key")
    @classmethod
    def _visible_ascii(cls, key: str | None) -> str | None:
        # Checked here rather than by ``pattern``, whose refusal would show the regex.
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            raise ValueError("an idempotency key is 1-255 visible ASCII characters")
        return key


class TaskBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskBatchItemIn] = Field(min_length=1, max_length=MAX_BATCH_SIZE)


class TaskErrorOut(BaseModel):
    type: str
    message: str
    retryable: bool


class ProgressOut(BaseModel):
    fraction: float = Field(ge=0, le=1)
    message: str
    updated_at: datetime


class TaskOut(BaseModel):
    id: UUID
    kind: str
    status: TaskStatus
    payload: Any
    attempts: int
    max_attempts: int
    timeout_seconds: float
    run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    result: Any
    error: TaskErrorOut | None
    progress: ProgressOut | None = Field(
        description="how far the running attempt got, as its handler last reported"
    )
    worker_id: str | None = Field(
        default=None, description="the worker running the current attempt (see /v1/workers)"
    )
    callback_url: str | None = Field(
        default=None, description="where the outcome is POSTed each time the task finishes"
    )
    schedule_id: UUID | None = Field(
        default=None, description="the schedule that submitted the task (see /v1/schedules)"
    )
    expires_at: datetime | None = Field(
        default=None, description="no attempt starts from then on (it fails as Expired)"
    )
    queue: str = Field(default=DEFAULT_QUEUE, description="the queue its runs go to")

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        error = task.error
        return cls(
            id=task.id,
            kind=task.kind,
            status=task.status,
            payload=task.payload,
            attempts=task.attempts,
            max_attempts=task.retry_policy.max_attempts,
            timeout_seconds=task.timeout.total_seconds(),
            run_at=task.run_at,
            created_at=task.created_at,
            updated_at=task.updated_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            cancel_requested=task.cancel_requested,
            result=task.result,
            error=TaskErrorOut(type=error.type, message=error.message, retryable=error.retryable)
            if error
            else None,
            progress=ProgressOut(
                fraction=task.progress.fraction,
                message=task.progress.message,
                updated_at=task.progress.updated_at,
            )
            if task.progress
            else None,
            worker_id=task.worker_id,
            callback_url=task.callback_url,
            schedule_id=task.schedule_id,
            expires_at=task.expires_at,
            queue=task.queue,
        )


class TaskBatchOut(BaseModel):
    items: list[TaskOut] = Field(description="one task per submitted item, in request order")


class _MatchingTasksIn(BaseModel):
    """The filter of a change to many tasks: the same as the task list's."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind | None = Field(default=None, pattern=KIND_PATTERN.pattern)
    queue: str | None = Field(
        default=None, pattern=QUEUE_PATTERN.pattern, description="only the tasks of this queue"
    )
    schedule_id: UUID | None = Field(default=None, description="only this schedule's tasks")
    limit: int = Field(
        default=MAX_BULK_CHANGE,
        ge=1,
        le=MAX_BULK_CHANGE,
        description="the most tasks this call changes, newest first",
    )

    def matching(self, owner: str, statuses: Iterable[str]) -> MatchingTasks:
        return MatchingTasks(
            owner,
            frozenset(TaskStatus(status) for status in statuses),
            self.limit,
            kind=self.kind,
            queue=self.queue,
            schedule_id=self.schedule_id,
        )


class CancelTasksIn(_MatchingTasksIn):
    status: list[Literal["SCHEDULED", "QUEUED"]] = Field(
        default=["SCHEDULED", "QUEUED"],
        min_length=1,
        max_length=2,
        description="the waiting tasks in any of these statuses (running ones are cancelled "
        "one at a time)",
    )


class RetryTasksIn(_MatchingTasksIn):
    status: list[Literal["FAILED", "CANCELLED"]] = Field(
        default=["FAILED"],
        min_length=1,
        max_length=2,
        description="the finished tasks in any of these statuses",
    )


class BulkChangeOut(BaseModel):
    ids: list[UUID] = Field(description="the tasks changed, newest first")
    more: bool = Field(
        description="more tasks matched than limit: call again (the tasks changed no longer "
        "match) until false"
    )

    @classmethod
    def of(cls, change: BulkChange) -> BulkChangeOut:
        return cls(ids=list(change.changed), more=change.more)


class TaskPageOut(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )


class KindOut(BaseModel):
    name: str
    description: str
    payload_schema: dict[str, Any] | None

    @classmethod
    def of(cls, kind: KindInfo) -> KindOut:
        return cls(name=kind.name, description=kind.description, payload_schema=kind.payload_schema)


class KindsOut(BaseModel):
    items: list[KindOut]


READY = "ok"


class ReadinessOut(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str] = Field(
        description=f"each backing service (storage, broker) and how it answered: {READY!r}; "
        "a 503 problem carries the same map, naming the failing ones"
    )


class StatusKindCount(BaseModel):
    status: TaskStatus
    kind: str
    count: int


class StatsOut(BaseModel):
    by_status: dict[TaskStatus, int]
    by_kind: dict[str, int]
    by_status_and_kind: list[StatusKindCount]
    by_queue: dict[str, dict[TaskStatus, int]] = Field(
        description="each queue holding tasks, with its tasks in each status (QUEUED: its backlog)"
    )
    oldest_queued_age_seconds: float | None = Field(
        description="how long the oldest QUEUED task has waited; null when none waits"
    )
    oldest_queued_age_seconds_by_queue: dict[str, float] = Field(
        description="each queue holding a QUEUED task: how long its oldest has waited"
    )
    outbox_backlog: int = Field(
        description="messages committed but not yet published (or published in the last "
        "moments: the relay marks them sent about 20 ms after their publish)"
    )

    @classmethod
    def of(cls, stats: Stats) -> StatsOut:
        by_status: dict[TaskStatus, int] = dict.fromkeys(TaskStatus, 0)
        by_kind: dict[str, int] = {}
        for (status, kind), count in stats.tasks.counts.items():
            by_status[status] += count
            by_kind[kind] = by_kind.get(kind, 0) + count
        by_queue: dict[str, dict[TaskStatus, int]] = {}
        for (status, queue), count in sorted(stats.tasks.by_queue.items(), key=_by_queue):
            by_queue.setdefault(queue, dict.fromkeys(TaskStatus, 0))[status] += count
        age = stats.oldest_queued_age
        return cls(
            by_status=by_status,
            by_kind=dict(sorted(by_kind.items())),
            by_queue=by_queue,
            by_status_and_kind=[
                StatusKindCount(status=status, kind=kind, count=count)
                for (status, kind), count in sorted(stats.tasks.counts.items())
            ],
            oldest_queued_age_seconds=age.total_seconds() if age is not None else None,
            oldest_queued_age_seconds_by_queue={
                queue: waited.total_seconds()
                for queue, waited in stats.oldest_queued_age_by_queue.items()
            },
            outbox_backlog=stats.outbox_backlog,
        )


def _by_queue(counted: tuple[tuple[TaskStatus, str], int]) -> str:
    (_, queue), _ = counted
    return queue


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    started_at: datetime
    last_heartbeat: datetime
    concurrency: int
    running: int = Field(
        description="tasks it was running at its last heartbeat (from the queue or pushed)"
    )
    status: Literal["alive", "lost"]
    queues: list[str] = Field(description="the queues whose tasks it takes")
    queue_limits: dict[str, int] = Field(
        default_factory=dict,
        description="the most tasks of a queue it runs at once, for the queues it takes with "
        "a limit",
    )

    @classmethod
    def of(cls, worker: WorkerView) -> WorkerOut:
        record = worker.record
        return cls(
            id=record.id,
            host=record.host,
            pid=record.pid,
            started_at=record.started_at,
            last_heartbeat=record.last_heartbeat,
            concurrency=record.concurrency,
            running=record.running,
            status=worker.status.value,
            queues=list(record.queues),
            queue_limits=dict(record.queue_limits),
        )


class WorkersOut(BaseModel):
    items: list[WorkerOut]


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = Field(
        min_length=1,
        max_length=MAX_CRON_LENGTH,
        description="minute hour day-of-month month day-of-week, or @hourly, @daily, "
        "@weekly, @monthly, @yearly",
        examples=["0 3 * * *"],
    )
    timezone: str = Field(
        default="UTC",
        min_length=1,
        max_length=MAX_TIMEZONE_LENGTH,
        description="the IANA time zone the cron expression is read in",
        examples=["Europe/Paris"],
    )
    name: str | None = Field(
        default=None,
        pattern=f"^{SCHEDULE_NAME_PATTERN.pattern}$",
        description="unique among the owner's schedules: a second one is a 409",
        examples=["nightly-report"],
    )
    paused: bool = False
    kind: Kind
    payload: Payload
    max_attempts: MaxAttempts = None
    timeout_seconds: TimeoutSeconds = None
    callback_url: CallbackUrl = None
    expires_after_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_EXPIRES_AFTER_SECONDS,
        strict=True,
        description="each task expires this long after its occurrence: one that no attempt "
        "has started by then fails as Expired, and an occurrence no sweep reached in time "
        "gets no task",
        examples=[3600],
    )
    queue: QueueName = DEFAULT_QUEUE

    def command(self, owner: str) -> CreateSchedule:
        return CreateSchedule(
            owner=owner,
            cron=self.cron,
            timezone=self.timezone,
            name=self.name,
            paused=self.paused,
            task=TaskTemplate(
                kind=self.kind,
                payload=self.payload,
                max_attempts=self.max_attempts,
                timeout_seconds=self.timeout_seconds,
                callback_url=self.callback_url,
                expires_after_seconds=self.expires_after_seconds,
                queue=self.queue,
            ),
        )


class ScheduleOut(BaseModel):
    id: UUID
    name: str | None
    cron: str
    timezone: str
    paused: bool
    next_run_at: datetime = Field(description="when its next task is submitted (UTC)")
    last_run_at: datetime | None = Field(description="the time of its latest task")
    last_task_id: UUID | None
    kind: str
    payload: Any
    max_attempts: int | None
    timeout_seconds: float | None
    callback_url: str | None
    expires_after_seconds: float | None
    queue: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleOut:
        task = schedule.task
        return cls(
            id=schedule.id,
            name=schedule.name,
            cron=schedule.cron,
            timezone=schedule.timezone,
            paused=schedule.paused,
            next_run_at=schedule.next_run_at,
            last_run_at=schedule.last_run_at,
            last_task_id=schedule.last_task_id,
            kind=task.kind,
            payload=task.payload,
            max_attempts=task.max_attempts,
            timeout_seconds=task.timeout_seconds,
            callback_url=task.callback_url,
            expires_after_seconds=task.expires_after_seconds,
            queue=task.queue,
            created_at=schedule.created_at,
            updated_at=schedule.updated_at,
        )


class SchedulePageOut(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )
