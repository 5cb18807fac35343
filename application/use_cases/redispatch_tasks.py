"""Put every queued or running task back on the queue, after the queue lost its messages.

The in-process queue lives in the memory of the process that serves it: a crash takes
its messages along, while the tasks they announced stay QUEUED or RUNNING in a durable
storage. Run at start, this sends each of them a fresh message. Duplicates are harmless:
a run claims its task with a version check, and a task still RUNNING is looked at
again when its lease ends (its lost attempt then fails and is retried).
"""

from __future__ import annotations

from uuid import UUID

from application.messages import TASKS_TOPIC, RunTaskMessage
from application.ports.clock import Clock
from application.ports.ids import IdGenerator
from application.ports.outbox import OutboxMessage, RelayTrigger
from application.ports.unit_of_work import UnitOfWorkFactory


class RedispatchTasksHandler:
    """Writes a run message to the outbox for every unfinished task, one batch per
    transaction; returns how many tasks it dispatched again."""

    def __init__(
        self, uow: UnitOfWorkFactory, ids: IdGenerator, clock: Clock, relay: RelayTrigger
    ) -> None:
        self._uow = uow
        self._ids = ids
        self._clock = clock
        self._relay = relay

    async def __call__(self, batch: int = 500) -> int:
        dispatched = 0
        after: UUID | None = None
        while True:
            async with self._uow() as uow:
                tasks = await uow.tasks.unfinished(after, batch)
                if not tasks:
                    break
                now = self._clock.now()
                for task in tasks:
                    body = RunTaskMessage(task.id).encode()
                    await uow.outbox.put(OutboxMessage(self._ids.new_id(), TASKS_TOPIC, body, now))
                await uow.commit()
            dispatched += len(tasks)
            after = tasks[-1].id
        if dispatched:
            self._relay.notify()
        return dispatched
