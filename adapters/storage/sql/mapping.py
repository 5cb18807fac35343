"""Explicit mapping between task rows and the Task aggregate (no ORM on domain classes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from application.ports.outbox import OutboxMessage
from application.ports.worker_registry import WorkerRecord
from domain.task import Task
from domain.values import Progress, RetryPolicy, TaskError, TaskStatus


def task_to_row(task: Task) -> dict[str, Any]:
    policy = task.retry_policy
    error = task.error
    progress = task.progress
    return {
        "id": task.id,
        "owner": task.owner,
        "kind": task.kind,
        "payload": task.payload,
        "status": task.status.value,
        "max_attempts": policy.max_attempts,
        "retry_base_delay": policy.base_delay,
        "retry_factor": policy.factor,
        "retry_max_delay": policy.max_delay,
        "timeout": task.timeout,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "run_at": task.run_at,
        "idempotency_key": task.idempotency_key,
        "request_fingerprint": task.request_fingerprint,
        "attempts": task.attempts,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "lease_expires_at": task.lease_expires_at,
        "cancel_requested": task.cancel_requested,
        "result": task.result,
        "error_type": error.type if error else None,
        "error_message": error.message if error else None,
        "error_retryable": error.retryable if error else None,
        "version": task.version,
        "progress_fraction": progress.fraction if progress else None,
        "progress_message": progress.message if progress else None,
        "progress_updated_at": progress.updated_at if progress else None,
        "worker_id": task.worker_id,
    }


def task_from_row(row: Row[Any]) -> Task:
    error = None
    if row.error_type is not None:
        error = TaskError(row.error_type, row.error_message or "", bool(row.error_retryable))
    progress = None
    if row.progress_fraction is not None:
        progress = Progress(
            row.progress_fraction, row.progress_message or "", row.progress_updated_at
        )
    return Task(
        id=row.id,
        owner=row.owner,
        kind=row.kind,
        payload=row.payload,
        status=TaskStatus(row.status),
        retry_policy=RetryPolicy(
            max_attempts=row.max_attempts,
            base_delay=row.retry_base_delay,
            factor=row.retry_factor,
            max_delay=row.retry_max_delay,
        ),
        timeout=row.timeout,
        created_at=row.created_at,
        updated_at=row.updated_at,
        run_at=row.run_at,
        idempotency_key=row.idempotency_key,
        request_fingerprint=row.request_fingerprint,
        attempts=row.attempts,
        started_at=row.started_at,
        finished_at=row.finished_at,
        lease_expires_at=row.lease_expires_at,
        cancel_requested=row.cancel_requested,
        result=row.result,
        error=error,
        version=row.version,
        progress=progress,
        worker_id=row.worker_id,
    )


def message_to_row(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "topic": message.topic,
        "body": message.body,
        "created_at": message.created_at,
        "sent_at": None,
    }


def message_from_row(row: Row[Any]) -> OutboxMessage:
    return OutboxMessage(
        id=row.id, topic=row.topic, body=bytes(row.body), created_at=row.created_at
    )


def worker_to_row(worker: WorkerRecord) -> dict[str, Any]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "started_at": worker.started_at,
        "last_heartbeat": worker.last_heartbeat,
        "concurrency": worker.concurrency,
        "running": worker.running,
    }


def worker_from_row(row: Row[Any]) -> WorkerRecord:
    return WorkerRecord(
        id=row.id,
        host=row.host,
        pid=row.pid,
        started_at=row.started_at,
        last_heartbeat=row.last_heartbeat,
        concurrency=row.concurrency,
        running=row.running,
    )
