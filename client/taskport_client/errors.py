"""What the client raises: every failure is a ``TaskportError``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskport_client.models import Task


class TaskportError(Exception):
    """Any failure of a call to Taskport."""


class Unreachable(TaskportError):
    """The server could not be reached, or did not answer, for as long as the client kept
    trying (``retry_for``)."""


class ApiError(TaskportError):
    """The server refused the request: ``status`` and its RFC 9457 problem document
    (``problem``; ``type``, ``title``, ``detail`` and, for a request refused for several
    reasons, ``errors``)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(f"{status} {self.title}: {self.detail}".rstrip(": "))

    @property
    def type(self) -> str:
        return str(self.problem.get("type", "about:blank"))

    @property
    def title(self) -> str:
        return str(self.problem.get("title", ""))

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail", ""))

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors = self.problem.get("errors")
        return errors if isinstance(errors, list) else []


class InvalidRequest(ApiError):
    """400 or 422: the request is wrong as sent (an unknown kind, a payload its kind
    refuses, a bad field); sending it again does not help."""


class Unauthorized(ApiError):
    """401: no API key, or one the server does not know."""


class NotFound(ApiError):
    """404: no such task for this API key's owner."""


class Conflict(ApiError):
    """409: the task is not in a state the change applies to (cancelling a finished task),
    or an idempotency key was used for a different request."""


class ServiceUnavailable(ApiError):
    """503: a service behind the API (storage, broker) is down; ``retry_after`` is the
    server's advice, in seconds. The client tries again until ``retry_for`` has passed."""

    def __init__(self, status: int, problem: dict[str, Any], retry_after: float | None) -> None:
        super().__init__(status, problem)
        self.retry_after = retry_after


class TaskFailed(TaskportError):
    """The awaited task ended FAILED; ``task.error`` says how."""

    def __init__(self, task: Task) -> None:
        self.task = task
        error = task.error or {}
        super().__init__(f"task {task.id} failed: {error.get('type')}: {error.get('message')}")


class TaskCancelled(TaskportError):
    """The awaited task was cancelled."""

    def __init__(self, task: Task) -> None:
        self.task = task
        super().__init__(f"task {task.id} was cancelled")


class WaitTimedOut(TaskportError, TimeoutError):
    """The task had not finished when the wait was over; ``task`` is as it was last read."""

    def __init__(self, task: Task) -> None:
        self.task = task
        super().__init__(f"task {task.id} still {task.status}")
