"""Explicit mapping between MongoDB documents and domain objects.

- Ids are canonical UUID strings: UUIDv7 strings sort like their bytes, so ``_id`` order
  is time order and keyset pages work on it.
- Datetimes are integers: microseconds since the Unix epoch, UTC. They compare and sort
  exactly on every server and round-trip exactly (BSON dates keep only milliseconds, and
  nx-27017 compares ISO-8601 strings as dates of its own precision).
- Durations are integers of microseconds; payload and result are JSON text, so any JSON
  value (big integers, keys with ``.`` or ``$``) round-trips unchanged.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from bson import Binary

from application.ports.outbox import OutboxMessage
from application.ports.worker_registry import WorkerRecord
from domain.task import Task
from domain.values import DEFAULT_QUEUE, Progress, RetryPolicy, TaskError, TaskStatus

_MICROSECOND = timedelta(microseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def instant(value: datetime) -> int:
    return (value - EPOCH) // _MICROSECOND


def optional_instant(value: datetime | None) -> int | None:
    return instant(value) if value is not None else None


def parse_instant(value: int | None) -> datetime | None:
    return required_instant(value) if value is not None else None


def required_instant(value: int) -> datetime:
    return EPOCH + value * _MICROSECOND


def _micros(value: timedelta) -> int:
    return value // _MICROSECOND


def task_fields(task: Task) -> dict[str, Any]:
    """Every field of the task, without ``_id``: what an insert or a save writes."""
    policy = task.retry_policy
    error = task.error
    progress = task.progress
    return {
        "owner": task.owner,
        "kind": task.kind,
        "payload": json.dumps(task.payload),
        "status": task.status.value,
        "max_attempts": policy.max_attempts,
        "retry_base_delay_us": _micros(policy.base_delay),
        "retry_factor": policy.factor,
        "retry_max_delay_us": _micros(policy.max_delay),
        "timeout_us": _micros(task.timeout),
        "created_at": instant(task.created_at),
        "updated_at": instant(task.updated_at),
        "run_at": optional_instant(task.run_at),
        "idempotency_key": task.idempotency_key,
        "request_fingerprint": task.request_fingerprint,
        "attempts": task.attempts,
        "started_at": optional_instant(task.started_at),
        "finished_at": optional_instant(task.finished_at),
        "lease_expires_at": optional_instant(task.lease_expires_at),
        "cancel_requested": task.cancel_requested,
        "result": json.dumps(task.result),
        "error": (
            {"type": error.type, "message": error.message, "retryable": error.retryable}
            if error
            else None
        ),
        "progress": (
            {
                "fraction": progress.fraction,
                "message": progress.message,
                "updated_at": instant(progress.updated_at),
            }
            if progress
            else None
        ),
        "worker_id": task.worker_id,
        "callback_url": task.callback_url,
        "schedule_id": str(task.schedule_id) if task.schedule_id is not None else None,
        "request_id": task.request_id,
        "expires_at": optional_instant(task.expires_at),
        "queue": task.queue,
        "version": task.version,
    }


def task_from_document(document: dict[str, Any]) -> Task:
    error = document.get("error")
    progress = document.get("progress")
    return Task(
        id=UUID(document["_id"]),
        owner=document["owner"],
        kind=document["kind"],
        payload=json.loads(document["payload"]),
        status=TaskStatus(document["status"]),
        retry_policy=RetryPolicy(
            max_attempts=document["max_attempts"],
            base_delay=document["retry_base_delay_us"] * _MICROSECOND,
            factor=document["retry_factor"],
            max_delay=document["retry_max_delay_us"] * _MICROSECOND,
        ),
        timeout=document["timeout_us"] * _MICROSECOND,
        created_at=required_instant(document["created_at"]),
        updated_at=required_instant(document["updated_at"]),
        run_at=parse_instant(document.get("run_at")),
        idempotency_key=document.get("idempotency_key"),
        request_fingerprint=document.get("request_fingerprint"),
        attempts=document["attempts"],
        started_at=parse_instant(document.get("started_at")),
        finished_at=parse_instant(document.get("finished_at")),
        lease_expires_at=parse_instant(document.get("lease_expires_at")),
        expires_at=parse_instant(document.get("expires_at")),
        cancel_requested=document["cancel_requested"],
        result=json.loads(document["result"]),
        error=(
            TaskError(error["type"], error["message"], bool(error["retryable"])) if error else None
        ),
        progress=(
            Progress(
                progress["fraction"],
                progress["message"],
                required_instant(progress["updated_at"]),
            )
            if progress
            else None
        ),
        worker_id=document.get("worker_id"),
        callback_url=document.get("callback_url"),
        schedule_id=UUID(schedule_id) if (schedule_id := document.get("schedule_id")) else None,
        request_id=document.get("request_id"),
        # Tasks stored before queues have none: they were all in the default queue.
        queue=document.get("queue", DEFAULT_QUEUE),
        version=document["version"],
    )


def message_fields(message: OutboxMessage) -> dict[str, Any]:
    return {
        "topic": message.topic,
        "body": Binary(message.body),
        "created_at": instant(message.created_at),
    }


def message_from_fields(message_id: str, fields: dict[str, Any]) -> OutboxMessage:
    return OutboxMessage(
        id=UUID(message_id),
        topic=fields["topic"],
        body=bytes(fields["body"]),
        created_at=required_instant(fields["created_at"]),
    )


def worker_document(worker: WorkerRecord) -> dict[str, Any]:
    return {
        "host": worker.host,
        "pid": worker.pid,
        "started_at": instant(worker.started_at),
        "last_heartbeat": instant(worker.last_heartbeat),
        "concurrency": worker.concurrency,
        "running": worker.running,
        "queues": list(worker.queues),
        "queue_limits": dict(worker.queue_limits),
    }


def worker_from_document(document: dict[str, Any]) -> WorkerRecord:
    return WorkerRecord(
        id=document["_id"],
        host=document["host"],
        pid=document["pid"],
        started_at=required_instant(document["started_at"]),
        last_heartbeat=required_instant(document["last_heartbeat"]),
        concurrency=document["concurrency"],
        running=document["running"],
        queues=tuple(document.get("queues", [DEFAULT_QUEUE])),
        queue_limits=dict(document.get("queue_limits", {})),
    )
