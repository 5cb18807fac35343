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
        "callback_url": task.callback_url,
        "schedule_id": task.schedule_id,
        "request_id": task.request_id,
        "expires_at": task.expires_at,
        "queue": task.queue,
    }


def task_from_row(row: Row[Any]) -> Task:
    # By name through ``_mapping``: a Row's attribute access takes several times as long,
    # which adds up over the 30 columns of every task read.
    return task_from_values(row._mapping)


def task_from_values(values: Any) -> Task:
    """The task of a row read by column name: a ``Row``'s mapping, or an asyncpg record."""
    error = None
    if values["error_type"] is not None:
        error = TaskError(
            values["error_type"], values["error_message"] or "", bool(values["error_retryable"])
        )
    progress = None
    if values["progress_fraction"] is not None:
        progress = Progress(
            values["progress_fraction"],
            values["progress_message"] or "",
            values["progress_updated_at"],
        )
    return Task(
        id=values["id"],
        owner=values["owner"],
        kind=values["kind"],
        payload=values["payload"],
        status=TaskStatus(values["status"]),
        retry_policy=RetryPolicy(
            max_attempts=values["max_attempts"],
            base_delay=values["retry_base_delay"],
            factor=values["retry_factor"],
            max_delay=values["retry_max_delay"],
        ),
        timeout=values["timeout"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        run_at=values["run_at"],
        idempotency_key=values["idempotency_key"],
        request_fingerprint=values["request_fingerprint"],
        attempts=values["attempts"],
        started_at=values["started_at"],
        finished_at=values["finished_at"],
        lease_expires_at=values["lease_expires_at"],
        cancel_requested=values["cancel_requested"],
        result=values["result"],
        error=error,
        version=values["version"],
        progress=progress,
        worker_id=values["worker_id"],
        callback_url=values["callback_url"],
        schedule_id=values["schedule_id"],
        request_id=values["request_id"],
        expires_at=values["expires_at"],
        queue=values["queue"],
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
    values = row._mapping
    return OutboxMessage(
        id=values["id"],
        topic=values["topic"],
        body=bytes(values["body"]),
        created_at=values["created_at"],
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
        "queues": ",".join(worker.queues),
        # Comma-separated queue:limit pairs: a queue name has no ':' nor ','.
        "queue_limits": ",".join(f"{queue}:{n}" for queue, n in worker.queue_limits.items()),
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
        queues=tuple(row.queues.split(",")),
        queue_limits={
            queue: int(n)
            for queue, _, n in (pair.partition(":") for pair in row.queue_limits.split(",") if pair)
        },
    )
