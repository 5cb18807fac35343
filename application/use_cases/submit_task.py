"""Submit a task: validate it, store it with its dispatch message, answer with the task."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from uuid import UUID

from attrs import frozen

from application import correlation
from application.callbacks import CALLBACK_KIND, callback_request
from application.errors import (
    DuplicateIdempotencyKey,
    IdempotencyKeyReused,
    InvalidPayload,
    UnknownKind,
)
from application.group_commit import GroupCommit
from application.json_values import unstorable
from application.ports.clock import Clock
from application.ports.handlers import HandlerRegistry
from application.ports.ids import IdGenerator
from application.ports.unit_of_work import UnitOfWorkFactory
from application.recorder import TaskRecorder
from domain.errors import InvalidTask
from domain.task import Task
from domain.values import JsonValue, RetryPolicy


@frozen
class TaskDefaults:
    """What a submitted task gets when the request does not say."""

    max_attempts: int = 3
    timeout: timedelta = timedelta(minutes=5)
    retry_base_delay: timedelta = timedelta(seconds=1)
    retry_max_delay: timedelta = timedelta(minutes=5)


@frozen
class SubmitTask:
    owner: str
    kind: str
    payload: JsonValue
    run_at: datetime | None = None
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    idempotency_key: str | None = None
    callback_url: str | None = None
    expires_at: datetime | None = None
    schedule_id: UUID | None = None
    """The schedule submitting the task (not part of a request: its key names the schedule)."""

    def fingerprint(self) -> str:
        """Identifies the request, to tell a repeat from a different request with the same key."""
        described = {
            "kind": self.kind,
            "payload": self.payload,
            "run_at": self.run_at.isoformat() if self.run_at else None,
            "max_attempts": self.max_attempts,
            "timeout_seconds": self.timeout_seconds,
        }
        # Absent when not given: earlier fingerprints still match.
        if self.callback_url is not None:
            described["callback_url"] = self.callback_url
        if self.expires_at is not None:
            described["expires_at"] = self.expires_at.isoformat()
        canonical = json.dumps(described, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@frozen
class Submitted:
    task: Task
    created: bool
    """False when an idempotent repeat returned the task of the first request."""


class NewTasks:
    """Turns submit requests into new tasks: the payload as its kind accepts it, the
    deployment's defaults where the request is silent, a new id, the time of submission.

    ``build`` raises ``UnknownKind``, ``InvalidPayload`` (a payload its kind refuses, or one
    that cannot be stored: see ``unstorable``) or ``InvalidTask`` (also for a callback URL
    that the ``http`` kind, which delivers callbacks, would not call).
    """

    def __init__(
        self, registry: HandlerRegistry, clock: Clock, ids: IdGenerator, defaults: TaskDefaults
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._ids = ids
        self._defaults = defaults

    def build(self, command: SubmitTask) -> Task:
        payload = self._registry.validate(command.kind, command.payload)
        if problem := unstorable(payload, "payload"):
            raise InvalidPayload(command.kind, [problem])
        if command.callback_url is not None:
            self._check_callback(command.callback_url)
        defaults = self._defaults
        timeout = (
            timedelta(seconds=command.timeout_seconds)
            if command.timeout_seconds is not None
            else defaults.timeout
        )
        return Task.submit(
            id=self._ids.new_id(),
            owner=command.owner,
            kind=command.kind,
            payload=payload,
            now=self._clock.now(),
            retry_policy=RetryPolicy(
                max_attempts=command.max_attempts or defaults.max_attempts,
                base_delay=defaults.retry_base_delay,
                max_delay=defaults.retry_max_delay,
            ),
            timeout=timeout,
            run_at=command.run_at,
            idempotency_key=command.idempotency_key,
            request_fingerprint=command.fingerprint() if command.idempotency_key else None,
            callback_url=command.callback_url,
            schedule_id=command.schedule_id,
            request_id=correlation.request_id.get(),
            expires_at=command.expires_at,
        )

    def _check_callback(self, url: str) -> None:
        try:
            self._registry.validate(CALLBACK_KIND, callback_request(url, "task.succeeded", None))
        except UnknownKind:
            raise InvalidTask(
                f"callback_url: callbacks are delivered by the {CALLBACK_KIND!r} kind, "
                "which this deployment does not have"
            ) from None
        except InvalidPayload as exc:
            reasons = [error.removeprefix("url: ") for error in exc.errors]
            raise InvalidTask(f"callback_url: {'; '.join(reasons)}") from None


def replayed(command: SubmitTask, earlier: Task) -> Submitted:
    """The answer to a repeat of ``command``, whose key ``earlier`` holds; raises
    ``IdempotencyKeyReused`` when ``earlier`` was submitted by a different request."""
    assert command.idempotency_key is not None
    if earlier.request_fingerprint != command.fingerprint():
        raise IdempotencyKeyReused(command.idempotency_key, earlier.id)
    return Submitted(earlier, created=False)


class SubmitTaskHandler:
    """Stores the new task with its dispatch message; a task without an idempotency key
    shares the transaction of other tasks submitted at the same time (``GroupCommit``)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        new_tasks: NewTasks,
        recorder: TaskRecorder,
        group_commit: GroupCommit,
    ) -> None:
        self._uow = uow
        self._new_tasks = new_tasks
        self._recorder = recorder
        self._group_commit = group_commit

    async def __call__(self, command: SubmitTask) -> Submitted:
        task = self._new_tasks.build(command)
        if command.idempotency_key is None:
            await self._group_commit.add(task)
            return Submitted(task, created=True)
        async with self._uow() as uow:
            if command.idempotency_key and (
                earlier := await uow.tasks.find_by_idempotency_key(
                    command.owner, command.idempotency_key
                )
            ):
                return replayed(command, earlier)
            try:
                await self._recorder.commit(uow, added=[task])
            except DuplicateIdempotencyKey:
                pass
            else:
                return Submitted(task, created=True)
        # A concurrent request with the same key committed first: answer with its task.
        assert command.idempotency_key is not None
        async with self._uow() as uow:
            earlier = await uow.tasks.find_by_idempotency_key(
                command.owner, command.idempotency_key
            )
        if earlier is None:
            raise DuplicateIdempotencyKey(command.owner, command.idempotency_key)
        return replayed(command, earlier)
