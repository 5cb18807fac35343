"""What the current piece of work is about, for logs: the HTTP request that caused it and
the task it handles. Carried from the API to the worker inside the run message."""

from __future__ import annotations

import re
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("taskport_request_id", default=None)
task_id: ContextVar[str | None] = ContextVar("taskport_task_id", default=None)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def fit_request_id(given: object) -> str | None:
    """``given`` when it may be a request id: 1-128 characters of A-Z, a-z, 0-9, '.', '_',
    ':' and '-', which every log line and response header can carry as they are; ``None``
    otherwise. It comes from outside (a caller's X-Request-ID, a message on the broker)."""
    return given if isinstance(given, str) and _REQUEST_ID.fullmatch(given) else None
