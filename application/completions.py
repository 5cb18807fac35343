"""Waiting for a task to finish: woken at once when it finishes in this process, and
reading it again now and then for a finish elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID

from application.outcomes import EVENT_TYPES
from domain import events


class Completions:
    """An ``EventListener`` that wakes those waiting for a task when a unit of work of this
    process commits its outcome. A task finished by another process wakes nobody here:
    waiters read the task again after their timeout."""

    def __init__(self) -> None:
        self._waiting: dict[UUID, set[asyncio.Event]] = {}
        self.closing = False

    def close(self) -> None:
        """The process is stopping: every wait ends now, and any later one at once."""
        self.closing = True
        for waiting in self._waiting.values():
            for woken in waiting:
                woken.set()

    def committed(self, recorded: Sequence[events.TaskEvent]) -> None:
        if not self._waiting:  # a worker's every commit, with no read waiting here
            return
        for event in recorded:
            if type(event) in EVENT_TYPES:  # an outcome
                for finished in self._waiting.get(event.task_id, ()):
                    finished.set()

    async def wait(self, task_id: UUID, within: float) -> bool:
        """Waits up to ``within`` seconds for ``task_id`` to finish in this process; true
        when it did (false when it did not, or the process is stopping)."""
        if self.closing:
            return False
        finished = asyncio.Event()
        waiting = self._waiting.setdefault(task_id, set())
        waiting.add(finished)
        try:
            async with asyncio.timeout(within):
                await finished.wait()
            return not self.closing
        except TimeoutError:
            return False
        finally:
            waiting.discard(finished)
            if not waiting:
                del self._waiting[task_id]
