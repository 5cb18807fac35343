"""Group commit: the new tasks of concurrent submits share one transaction."""

from __future__ import annotations

import asyncio
import contextvars

from application.ports.unit_of_work import UnitOfWorkFactory
from application.recorder import Changes, TaskRecorder
from domain.task import Task

MAX_GROUP = 1000
COMMITTERS = 4

_Waiting = tuple[Changes, contextvars.Context, asyncio.Future[None]]


class GroupCommit:
    """Stores new tasks (with their outbox messages), many per unit of work.

    ``add`` returns once the unit holding the task committed, and raises what that commit
    raised: a caller answers "accepted" only for a task that is stored. Up to
    ``committers`` units commit at a time; the tasks added meanwhile wait and go together
    in the next one, up to ``max_group``. Alone, a task commits at once; under load a
    transaction's round trips and its connection are shared by the whole group.

    Each task's messages and log lines carry the context of the request that added it
    (its request id), not the committer's.

    For tasks whose commit cannot be refused by another task (no idempotency key): in a
    group, a refusal would fail every task of it.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        recorder: TaskRecorder,
        max_group: int = MAX_GROUP,
        committers: int = COMMITTERS,
    ) -> None:
        self._uow = uow
        self._recorder = recorder
        self._max_group = max_group
        self._committers = committers
        self._waiting: list[_Waiting] = []
        self._committing: set[asyncio.Task[None]] = set()

    async def add(self, task: Task) -> None:
        changes = self._recorder.record(added=[task])
        committed = asyncio.get_running_loop().create_future()
        self._waiting.append((changes, contextvars.copy_context(), committed))
        if len(self._committing) < self._committers:
            committer = asyncio.create_task(self._commit_while_waiting())
            self._committing.add(committer)
            committer.add_done_callback(self._committing.discard)
        await committed

    async def _commit_while_waiting(self) -> None:
        group: list[_Waiting] = []
        try:
            while self._waiting:
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                await self._commit(group)
        except BaseException:
            # Cancelled (the loop is closing): nobody is left waiting for an answer.
            for _, _, committed in (*group, *self._waiting):
                committed.cancel()
            self._waiting.clear()
            raise

    async def _commit(self, group: list[_Waiting]) -> None:
        try:
            async with self._uow() as uow:
                await self._recorder.write(uow, [changes for changes, _, _ in group])
        except Exception as error:
            for _, _, committed in group:
                if not committed.done():
                    committed.set_exception(error)
            return
        for changes, context, committed in group:
            # Announced here rather than by the caller, which may have given up waiting.
            context.run(self._recorder.announce, changes)
            if not committed.done():
                committed.set_result(None)
