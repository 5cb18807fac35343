"""The HTTP server of ``taskport serve``: uvicorn's, telling the application it stops."""

from __future__ import annotations

from collections.abc import Callable
from socket import socket

import uvicorn


class Server(uvicorn.Server):
    """Calls ``stopping`` as the shutdown begins, before uvicorn waits for the requests still
    open (up to its ``timeout_graceful_shutdown``): reads waiting for their task then
    answer at once, with the task as it is."""

    def __init__(self, config: uvicorn.Config, stopping: Callable[[], None]) -> None:
        super().__init__(config)
        self._stopping = stopping

    async def shutdown(self, sockets: list[socket] | None = None) -> None:
        self._stopping()
        await super().shutdown(sockets)
