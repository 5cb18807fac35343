"""Submit many tasks at once: all of them are stored, in one transaction, or none is."""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen

from application.errors import (
    DuplicateIdempotencyKey,
    InvalidBatch,
    InvalidPayload,
    UnknownKind,
    UnknownQueue,
)
from application.ports.unit_of_work import UnitOfWork, UnitOfWorkFactory
from application.recorder import TaskRecorder
from application.submissions import NewTasks, SubmitTask, Submitted, replayed
from domain.errors import InvalidTask
from domain.task import Task

MAX_BATCH_SIZE = 1000


@frozen
class SubmitTaskBatch:
    """The items of one batch, each with its own optional idempotency key; one owner."""

    items: tuple[SubmitTask, ...]


class SubmitTaskBatchHandler:
    """Validates every item before storing any (``InvalidBatch`` names each bad item, and
    keys repeated inside the batch), then stores the new tasks with their outbox messages
    in one unit of work. An item whose key an earlier request of the owner used is answered
    with that request's task, or refuses the whole batch (``IdempotencyKeyReused``) when
    that request was a different one. Returns one ``Submitted`` per item, in order."""

    def __init__(self, uow: UnitOfWorkFactory, new_tasks: NewTasks, recorder: TaskRecorder) -> None:
        self._uow = uow
        self._new_tasks = new_tasks
        self._recorder = recorder

    async def __call__(self, command: SubmitTaskBatch) -> list[Submitted]:
        tasks = self._validated(command.items)
        # A concurrent request may take keys of the batch between its lookup and its
        # commit; the next attempt finds them taken and answers with their tasks. Each
        # failed attempt found a key taken: there are at most as many as keys.
        attempts = 1 + len({item.idempotency_key for item in command.items} - {None})
        for attempt in range(1, attempts + 1):
            async with self._uow() as uow:
                answers = await self._answers(uow, command.items, tasks)
                added = [answer.task for answer in answers if answer.created]
                try:
                    if added:
                        await self._recorder.commit(uow, added=added)
                    return answers
                except DuplicateIdempotencyKey:
                    if attempt == attempts:
                        raise
            # The failed commit took the tasks' events: the next attempt starts afresh.
            tasks = [self._new_tasks.build(item) for item in command.items]
        raise AssertionError("unreachable")

    def _validated(self, items: Sequence[SubmitTask]) -> list[Task]:
        problems: list[tuple[int | None, str]] = []
        if not 1 <= len(items) <= MAX_BATCH_SIZE:
            problems.append((None, f"a batch holds 1 to {MAX_BATCH_SIZE} tasks, not {len(items)}"))
        if len({item.owner for item in items}) > 1:
            problems.append((None, "the tasks of a batch have one owner"))
        first_with_key: dict[str, int] = {}
        tasks = []
        for index, item in enumerate(items):
            key = item.idempotency_key
            if key is not None and (first := first_with_key.setdefault(key, index)) != index:
                problems.append((index, f"idempotency key {key!r} is also the key of item {first}"))
            try:
                tasks.append(self._new_tasks.build(item))
            except (UnknownKind, UnknownQueue, InvalidPayload, InvalidTask) as error:
                problems.append((index, str(error)))
        if problems:
            raise InvalidBatch(problems)
        return tasks

    @staticmethod
    async def _answers(
        uow: UnitOfWork, items: Sequence[SubmitTask], tasks: Sequence[Task]
    ) -> list[Submitted]:
        keys = [item.idempotency_key for item in items if item.idempotency_key is not None]
        earlier = await uow.tasks.find_by_idempotency_keys(items[0].owner, keys) if keys else {}
        answers = []
        for item, task in zip(items, tasks, strict=True):
            key = item.idempotency_key
            held = earlier.get(key) if key is not None else None
            answers.append(replayed(item, held) if held else Submitted(task, created=True))
        return answers
