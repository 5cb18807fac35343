"""A Python client of Taskport's HTTP API: ``AsyncClient`` for asyncio code, ``Client``
for the rest. It needs httpx and tenacity, nothing of the server.

    from taskport_client import AsyncClient

    async with AsyncClient("http://127.0.0.1:8000", api_key=key) as taskport:
        task = await taskport.submit("thumbnail", {"url": url}, queue="images")
        thumbnail = await taskport.result(task.id, timeout=60)
"""

from taskport_client.async_client import AsyncClient
from taskport_client.errors import (
    ApiError,
    Conflict,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    TaskCancelled,
    TaskFailed,
    TaskportError,
    Unauthorized,
    Unreachable,
    WaitTimedOut,
)
from taskport_client.models import NewTask, Schedule, Task
from taskport_client.sync_client import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "Conflict",
    "InvalidRequest",
    "NewTask",
    "NotFound",
    "Schedule",
    "ServiceUnavailable",
    "Task",
    "TaskCancelled",
    "TaskFailed",
    "TaskportError",
    "Unauthorized",
    "Unreachable",
    "WaitTimedOut",
]
