"""Group commit: the new tasks of concurrent submits share one transaction."""

from __future__ import annotations

import asyncio

from application.ports.unit_of_work import UnitOfWorkFactory
from application.recorder import TaskRecorder
from domain.task import Task

MAX_GROUP = 1000
COMMITTERS = 4


class GroupCommit:
    """Stores new tasks (with their outbox messages), many per unit of work.

    ``add`` returns once the unit holding the task committed, and raises what that commit
    raised: a caller answers "accepted" only for a task that is stored. One unit commits at
    a time; the tasks added meanwhile wait and go together in the next one, up to
    ``max_group``. Alone, a task commits at once; under load a transaction's round trips
    and the connection checkout are shared by the whole group.

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
        self._waiting: list[tuple[Task, asyncio.Future[None]]] = []
        self._committing: set[asyncio.Task[None]] = set()

    async def add(self, task: Task) -> None:
        committed = asyncio.get_running_loop().create_future()
        self._waiting.append((task, committed))
        if len(self._committing) < self._committers:
            committer = asyncio.create_task(self._commit_while_waiting())
            self._committing.add(committer)
            committer.add_done_callback(self._committing.discard)
        await committed

    async def _commit_while_waiting(self) -> None:
        group: list[tuple[Task, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                await self._commit(group)
        except BaseException:
            # Cancelled (the loop is closing): nobody is left waiting for an answer.
            for _, committed in (*group, *self._waiting):
                committed.cancel()
            self._waiting.clear()
            raise

    async def _commit(self, group: list[tuple[Task, asyncio.Future[None]]]) -> None:
        try:
            async with self._uow() as uow:
                await self._recorder.commit(uow, added=[task for task, _ in group])
        except Exception as error:
            for _, committed in group:
                if not committed.done():
                    committed.set_exception(error)
        else:
            for _, committed in group:
                if not committed.done():
                    committed.set_result(None)
