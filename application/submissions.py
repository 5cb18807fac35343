"""A submission, whichever way it comes (one task, a batch, a schedule's run): the request
(``SubmitTask``) and its fingerprint, the deployment's defaults, the new task built from it
(``NewTasks``), and the answer (``Submitted``), a replay of the earlier task for a repeat of
an idempotent request."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from uuid import UUID

from attrs import frozen

from application import correlation
from application.callbacks import CALLBACK_KIND, callback_request
from application.errors import IdempotencyKeyReused, InvalidPayload, UnknownKind, UnknownQueue
from application.json_values import unstorable
from application.ports.clock import Clock
from application.ports.handlers import HandlerRegistry
from application.ports.ids import IdGenerator
from domain.errors import InvalidTask
from domain.task import Task
from domain.values import DEFAULT_QUEUE, JsonValue, RetryPolicy


@frozen
class TaskDefaults:
    """What a submitted task gets when the request does not say."""

    max_attempts: int = 3
    timeout: timedelta = timedelta(minutes=5)
    retry_base_delay: timedelta = timedelta(seconds=1)
    retry_max_delay: timedelta = timedelta(minutes=5)
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    """The deployment's queues: a task goes to one of them (the default queue unless it
    names another)."""


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
    queue: str = DEFAULT_QUEUE
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
        if self.queue != DEFAULT_QUEUE:
            described["queue"] = self.queue
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

    ``build`` raises ``UnknownKind``, ``UnknownQueue`` (a queue the deployment does not
    have), ``InvalidPayload`` (a payload its kind refuses, or one that cannot be stored: see
    ``unstorable``) or ``InvalidTask`` (also for a callback URL that the ``http`` kind,
    which delivers callbacks, would not call).
    """

    def __init__(
        self, registry: HandlerRegistry, clock: Clock, ids: IdGenerator, defaults: TaskDefaults
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._ids = ids
        self._defaults = defaults

    def build(self, command: SubmitTask) -> Task:
        if command.queue not in self._defaults.queues:
            raise UnknownQueue(command.queue, self._defaults.queues)
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
            queue=command.queue,
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
