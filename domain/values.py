"""Value objects of the task domain."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from attrs import field, frozen

from domain.errors import InvalidTask

JsonValue = Any
"""Any value that survives a JSON round trip (dict, list, str, int, float, bool, None)."""

MAX_ATTEMPTS_LIMIT = 100
MAX_OWNER_LENGTH = 200
"""The longest owner name (of a task or a schedule) every storage keeps whole."""
MAX_TIMEOUT_SECONDS = 24 * 3600
MAX_PROGRESS_MESSAGE = 200
MAX_ERROR_TYPE = 200
MAX_ERROR_MESSAGE = 4096
"""An error's message is kept up to this many characters (an exception's text can be a
whole response body): longer ones are cut, ending in ``…``."""

DEFAULT_QUEUE = "default"
"""The queue of a task submitted without one."""
QUEUE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
"""A queue's name: it becomes part of the broker's queue, topic and subscription names.
Anchored as JSON Schema reads a pattern: match it with ``fullmatch``."""


def queue_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a queue; ``None`` when it can."""
    if QUEUE_PATTERN.fullmatch(name):
        return None
    return f"queue {name!r} must be 1-40 characters of a-z, 0-9, '_', '-' starting with a letter"


def queues_problem(queues: Sequence[str]) -> str | None:
    """Why ``queues`` cannot be a deployment's queues (none, one named twice, or a name that
    cannot name a queue); ``None`` when they can."""
    if not queues:
        return "a deployment needs at least one queue"
    if len(set(queues)) != len(queues):
        return f"queues are named twice: {', '.join(queues)}"
    return next(filter(None, map(queue_name_problem, queues)), None)


def consumed_problem(consumed: Sequence[str], queues: Sequence[str]) -> str | None:
    """Why a consumer cannot take ``consumed`` of the deployment's ``queues``; ``None`` when
    it can."""
    unknown = [queue for queue in consumed if queue not in queues]
    if unknown or not consumed:
        return (
            f"a consumer takes one or more of the deployment's queues ({', '.join(queues)}), "
            f"not {', '.join(unknown) or 'none'}"
        )
    return None


class TaskStatus(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})


def _positive(_: object, attribute: Any, value: float) -> None:
    if value <= 0:
        raise InvalidTask(f"{attribute.name} must be positive, got {value}")


@frozen
class RetryPolicy:
    """How many attempts a task gets and how long to wait between them.

    The wait before attempt n+1 is ``base_delay * factor ** (n - 1)``, capped at ``max_delay``.
    """

    max_attempts: int = 3
    base_delay: timedelta = timedelta(seconds=1)
    factor: float = field(default=2.0, validator=_positive)
    max_delay: timedelta = timedelta(minutes=5)

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise InvalidTask(
                f"max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {self.max_attempts}"
            )
        if self.base_delay < timedelta(0) or self.max_delay < self.base_delay:
            raise InvalidTask("retry delays must satisfy 0 <= base_delay <= max_delay")

    def delay_after(self, attempt: int) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        seconds = self.base_delay.total_seconds() * self.factor ** max(attempt - 1, 0)
        return min(timedelta(seconds=min(seconds, self.max_delay.total_seconds())), self.max_delay)


_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")
"""NUL, which PostgreSQL's text cannot hold, and lone surrogates, which are not Unicode
text at all (UTF-8 has no encoding for them)."""


def not_text(text: str) -> str | None:
    """The first character of ``text`` that is no storable text (see ``_NOT_TEXT``)."""
    if text.isascii() and "\x00" not in text:
        return None
    found = _NOT_TEXT.search(text)
    return found.group() if found else None


def plain_text(text: str) -> str:
    """``text`` with every NUL character and lone surrogate replaced by U+FFFD: a message
    (an exception's, a handler's) may carry them, and no storage has to refuse it."""
    return _NOT_TEXT.sub("\ufffd", text) if not_text(text) else text


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_type(text: str) -> str:
    return _cut(plain_text(text), MAX_ERROR_TYPE)


def _error_message(text: str) -> str:
    return _cut(plain_text(text), MAX_ERROR_MESSAGE)


@frozen
class TaskError:
    """Why an attempt failed: a short type name and a human message, as plain text and cut
    to ``MAX_ERROR_TYPE`` and ``MAX_ERROR_MESSAGE`` characters."""

    type: str = field(converter=_error_type)
    message: str = field(converter=_error_message)
    retryable: bool = True


def check_progress(fraction: float, message: str) -> None:
    """Raises ``InvalidTask`` unless ``fraction`` lies in [0, 1] and ``message`` is short."""
    if not (isinstance(fraction, int | float) and math.isfinite(fraction) and 0 <= fraction <= 1):
        raise InvalidTask(f"progress must be a fraction between 0 and 1, got {fraction!r}")
    if len(message) > MAX_PROGRESS_MESSAGE:
        raise InvalidTask(f"a progress message is at most {MAX_PROGRESS_MESSAGE} characters")


@frozen
class Progress:
    """How far the running attempt of a task got, as its handler last reported it."""

    fraction: float
    message: str = field(converter=plain_text)
    updated_at: datetime

    def __attrs_post_init__(self) -> None:
        check_progress(self.fraction, self.message)
