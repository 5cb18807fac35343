"""Commits changed tasks together with the outbox messages their events call for."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from application.messages import messages_for
from application.ports.clock import Clock
from application.ports.events import EventListener
from application.ports.ids import IdGenerator
from application.ports.outbox import RelayTrigger
from application.ports.unit_of_work import UnitOfWork
from domain.task import Task

logger = logging.getLogger("taskport.events")


class TaskRecorder:
    """The one way use cases end a unit of work that changed tasks.

    Nothing is published before commit: messages go to the outbox in the same transaction,
    and the relay is woken only once the commit succeeded.
    """

    def __init__(
        self,
        ids: IdGenerator,
        clock: Clock,
        relay: RelayTrigger,
        listeners: Sequence[EventListener] = (),
    ) -> None:
        self._ids = ids
        self._clock = clock
        self._relay = relay
        self._listeners = listeners

    async def commit(
        self, uow: UnitOfWork, *, added: Sequence[Task] = (), saved: Sequence[Task] = ()
    ) -> None:
        for task in added:
            await uow.tasks.add(task)
        for task in saved:
            await uow.tasks.save(task)
        recorded = [event for task in (*added, *saved) for event in task.pull_events()]
        messages = messages_for(recorded, self._ids, self._clock.now())
        for message in messages:
            await uow.outbox.put(message)
        await uow.commit()
        if messages:
            self._relay.notify()
        for listener in self._listeners:
            listener.committed(recorded)
        for event in recorded:
            logger.info(
                "%s task=%s kind=%s",
                type(event).__name__,
                event.task_id,
                event.kind,
                extra={"task_id": str(event.task_id), "kind": event.kind},
            )
