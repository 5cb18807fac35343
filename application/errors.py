"""Errors the use cases raise; entrypoints map them to their protocol (HTTP status, ack/nack)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID


class ApplicationError(Exception):
    """Base class of the errors a use case reports to its caller."""


class TaskNotFound(ApplicationError):
    def __init__(self, task_id: UUID) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} does not exist")


class ScheduleNotFound(ApplicationError):
    def __init__(self, schedule_id: UUID) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"schedule {schedule_id} does not exist")


class ScheduleNameTaken(ApplicationError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a schedule named {name!r} exists already")


class TooManySchedules(ApplicationError):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"an owner has at most {limit} schedules; delete one first")


class ConcurrencyConflict(ApplicationError):
    """The task changed since it was read; the caller may read it again and retry."""

    def __init__(self, task_id: UUID) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} was changed concurrently")


class DuplicateIdempotencyKey(ApplicationError):
    """Another task of the same owner already holds this idempotency key."""

    def __init__(self, owner: str, key: str) -> None:
        self.owner = owner
        self.key = key
        super().__init__(f"idempotency key {key!r} is already used")


class IdempotencyKeyReused(ApplicationError):
    """The idempotency key was used before for a different request."""

    def __init__(self, key: str, task_id: UUID) -> None:
        self.key = key
        self.task_id = task_id
        super().__init__(
            f"idempotency key {key!r} was already used for a different request (task {task_id})"
        )


class UnknownKind(ApplicationError):
    def __init__(self, kind: str, known: Sequence[str]) -> None:
        self.kind = kind
        self.known = list(known)
        super().__init__(f"unknown task kind {kind!r}; known kinds: {', '.join(self.known)}")


class UnknownQueue(ApplicationError):
    def __init__(self, queue: str, known: Sequence[str]) -> None:
        self.queue = queue
        self.known = list(known)
        super().__init__(f"unknown queue {queue!r}; this deployment has: {', '.join(self.known)}")


class InvalidPayload(ApplicationError):
    def __init__(self, kind: str, errors: Sequence[str]) -> None:
        self.kind = kind
        self.errors = list(errors)
        super().__init__(f"invalid payload for kind {kind!r}: {'; '.join(self.errors)}")


class InvalidBatch(ApplicationError):
    """A batch refused as a whole: ``problems`` maps the index of each bad item (``None``
    for the batch itself) to what is wrong with it."""

    def __init__(self, problems: Sequence[tuple[int | None, str]]) -> None:
        self.problems = list(problems)
        described = "; ".join(
            f"item {index}: {message}" if index is not None else message
            for index, message in self.problems
        )
        super().__init__(f"invalid batch: {described}")


class PoisonMessage(ApplicationError):
    """A delivered message that can never be processed (undecodable)."""


class Unavailable(ApplicationError):
    """A backing service cannot be reached right now; the request may be retried later."""

    def __init__(self, service: str, reason: str, retry_after_seconds: int = 1) -> None:
        self.service = service
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"{service} is unavailable: {reason}")


class StorageUnavailable(Unavailable):
    def __init__(self, reason: str, retry_after_seconds: int = 1) -> None:
        super().__init__("storage", reason, retry_after_seconds)


class StorageRefused(StorageUnavailable):
    """The database answered, but refuses this deployment: no such database, no such user,
    a wrong password. Waiting does not help; the settings must change."""


class BrokerUnavailable(Unavailable):
    def __init__(self, reason: str, retry_after_seconds: int = 1) -> None:
        super().__init__("broker", reason, retry_after_seconds)


class PartlyPublished(BrokerUnavailable):
    """The broker took some of the messages handed to it and not the others (a missing
    topic, a nack, a channel lost halfway): ``published`` holds the ids of those it took."""

    def __init__(self, reason: str, published: frozenset[UUID]) -> None:
        super().__init__(reason)
        self.published = published


class PermanentFailure(Exception):
    """Raised by a task handler for a failure that no retry can fix."""


class RetryLater(Exception):
    """Raised by a task handler for a failure worth another attempt, no sooner than
    ``retry_after`` when given (the retry waits the longer of it and the backoff)."""

    def __init__(self, message: str, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
