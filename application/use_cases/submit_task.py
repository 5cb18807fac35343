"""Submit a task: validate it, store it with its dispatch message, answer with the task."""

from __future__ import annotations

from application.errors import DuplicateIdempotencyKey
from application.group_commit import GroupCommit
from application.ports.unit_of_work import UnitOfWorkFactory
from application.recorder import TaskRecorder
from application.submissions import NewTasks, SubmitTask, Submitted, replayed

__all__ = ["SubmitTask", "SubmitTaskHandler", "Submitted"]


class SubmitTaskHandler:
    """Stores the new task with its dispatch message; a task without an idempotency key
    shares the transaction of other tasks submitted at the same time (``GroupCommit``)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        new_tasks: NewTasks,
        recorder: TaskRecorder,
        group_commit: GroupCommit,
    ) -> None:
        self._uow = uow
        self._new_tasks = new_tasks
        self._recorder = recorder
        self._group_commit = group_commit

    async def __call__(self, command: SubmitTask) -> Submitted:
        task = self._new_tasks.build(command)
        if command.idempotency_key is None:
            await self._group_commit.add(task)
            return Submitted(task, created=True)
        async with self._uow() as uow:
            if command.idempotency_key and (
                earlier := await uow.tasks.find_by_idempotency_key(
                    command.owner, command.idempotency_key
                )
            ):
                return replayed(command, earlier)
            try:
                await self._recorder.commit(uow, added=[task])
            except DuplicateIdempotencyKey:
                pass
            else:
                return Submitted(task, created=True)
        # A concurrent request with the same key committed first: answer with its task.
        assert command.idempotency_key is not None
        async with self._uow() as uow:
            earlier = await uow.tasks.find_by_idempotency_key(
                command.owner, command.idempotency_key
            )
        if earlier is None:
            raise DuplicateIdempotencyKey(command.owner, command.idempotency_key)
        return replayed(command, earlier)
