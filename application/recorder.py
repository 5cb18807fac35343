"""Commits changed tasks together with the outbox messages their events call for."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from attrs import frozen

from application.callbacks import Callbacks
from application.messages import event_messages, messages_for
from application.ports.clock import Clock
from application.ports.events import EventListener
from application.ports.ids import IdGenerator
from application.ports.outbox import OutboxMessage, RelayTrigger
from application.ports.unit_of_work import UnitOfWork
from domain.events import TaskEvent, TaskFailed, TaskRetryScheduled
from domain.task import Task

logger = logging.getLogger("taskport.events")


@frozen
class Changes:
    """Changed tasks, the events they recorded and the outbox messages those call for."""

    added: Sequence[Task]
    saved: Sequence[Task]
    events: Sequence[TaskEvent]
    messages: Sequence[OutboxMessage]


class TaskRecorder:
    """The one way use cases end a unit of work that changed tasks.

    Nothing is published before commit: messages go to the outbox in the same transaction,
    and are handed to the relay (its fast path) only once the commit succeeded.

    ``commit`` does it all; ``record``, ``write`` and ``announce`` are its three steps, for
    a caller that commits the changes of several requests together: ``record`` and
    ``announce`` run in the context of the request that made the changes (its request id
    goes in the messages and the log lines).
    """

    def __init__(
        self,
        ids: IdGenerator,
        clock: Clock,
        relay: RelayTrigger,
        listeners: Sequence[EventListener] = (),
        callbacks: Callbacks | None = None,
        publish_events: bool = False,
    ) -> None:
        """With ``publish_events``, each outcome of a task (it succeeded, failed or was
        cancelled) also goes to the outbox as a ``TaskEventMessage``."""
        self._ids = ids
        self._publish_events = publish_events
        self._callbacks = callbacks
        self._clock = clock
        self._relay = relay
        self._listeners = listeners

    async def commit(
        self, uow: UnitOfWork, *, added: Sequence[Task] = (), saved: Sequence[Task] = ()
    ) -> None:
        changes = self.record(added=added, saved=saved)
        await self.write(uow, [changes])
        self.announce(changes)

    def record(self, *, added: Sequence[Task] = (), saved: Sequence[Task] = ()) -> Changes:
        """Takes the tasks' events and makes what they call for: the deliveries of the
        callbacks of tasks that finished (new tasks, added) and the outbox messages."""
        events = [event for task in (*added, *saved) for event in task.pull_events()]
        now = self._clock.now()
        outcome_events = (
            event_messages(saved, events, self._ids, now) if self._publish_events else []
        )
        if self._callbacks is not None and (
            deliveries := self._callbacks.deliveries(saved, events)
        ):
            added = [*added, *deliveries]
            events += [event for task in deliveries for event in task.pull_events()]
        dispatches = messages_for(events, [*added, *saved], self._ids, now)
        return Changes(added, saved, events, [*dispatches, *outcome_events])

    async def write(
        self, uow: UnitOfWork, changes: Sequence[Changes], *, durable: bool = True
    ) -> None:
        """Stages every change in ``uow`` and commits it (``durable``: see
        ``UnitOfWork.commit``); hands the messages to the relay."""
        for change in changes:
            for task in change.added:
                await uow.tasks.add(task)
            for task in change.saved:
                await uow.tasks.save(task)
            for message in change.messages:
                await uow.outbox.put(message)
        await uow.commit(durable=durable)
        messages = [message for change in changes for message in change.messages]
        if messages:
            self._relay.notify(messages)

    def announce(self, changes: Changes) -> None:
        """Tells the listeners and the log about committed changes."""
        for listener in self._listeners:
            listener.committed(changes.events)
        if not logger.isEnabledFor(logging.INFO):
            return
        for event in changes.events:
            logger.info(
                "%s task=%s kind=%s%s",
                type(event).__name__,
                event.task_id,
                event.kind,
                _why(event),
                extra={"task_id": str(event.task_id), "kind": event.kind},
            )


def _why(event: TaskEvent) -> str:
    """What a log line of a failed attempt adds: which attempt, the type of its error and,
    for a retry, when it comes (the message is the task's, read through the API)."""
    match event:
        case TaskRetryScheduled():
            retry_at = event.run_at.isoformat()
            return f" attempt={event.attempt} error={event.error.type} retry_at={retry_at}"
        case TaskFailed():
            return f" attempt={event.attempt} error={event.error.type}"
    return ""
