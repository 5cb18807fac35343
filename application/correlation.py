"""What the current piece of work is about, for logs: the HTTP request that caused it and
the task it handles. Carried from the API to the worker inside the run message."""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("taskport_request_id", default=None)
task_id: ContextVar[str | None] = ContextVar("taskport_task_id", default=None)
