"""Find tasks that no worker will ever finish and put them back on their way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from application.errors import ConcurrencyConflict
from application.ports.clock import Clock
from application.ports.unit_of_work import UnitOfWorkFactory
from application.recorder import TaskRecorder
from domain.values import TaskError, TaskStatus

END_OF_TIME = datetime.max.replace(tzinfo=UTC)


class RecoverStalledTasksHandler:
    """One recovery sweep; returns how many tasks it recovered.

    - a RUNNING task whose lease ended lost its attempt (its worker died): the attempt
      fails as ``AttemptLost`` and is retried after its backoff while attempts are left;
    - so does, without waiting for its lease, a RUNNING task whose worker has not
      heartbeated for ``worker_lost_after`` (or left the registry), when that is given;
    - a QUEUED task untouched for ``redispatch_after`` may have lost its message (a broker
      that forgot it): it is dispatched again. Duplicates are harmless.

    With ``orphaned=True`` every RUNNING task and every task QUEUED before ``started``
    (default: now) counts as stalled: for a process that starts with an in-process queue,
    which nothing else could be consuming. Passing the process's start keeps repeated calls
    from finding again the tasks they just queued.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        recorder: TaskRecorder,
        clock: Clock,
        redispatch_after: timedelta = timedelta(minutes=15),
        worker_lost_after: timedelta | None = None,
    ) -> None:
        self._uow = uow
        self._recorder = recorder
        self._clock = clock
        self._redispatch_after = redispatch_after
        self._worker_lost_after = worker_lost_after

    async def __call__(
        self, limit: int = 500, *, orphaned: bool = False, started: datetime | None = None
    ) -> int:
        now = self._clock.now()
        lease_ended_by = END_OF_TIME if orphaned else now
        queued_since = (started or now) if orphaned else now - self._redispatch_after
        workers_lost_before = None
        if self._worker_lost_after is not None and not orphaned:
            workers_lost_before = now - self._worker_lost_after
        async with self._uow() as uow:
            stalled = await uow.tasks.stalled(
                lease_ended_by, queued_since, limit, workers_lost_before
            )
            for task in stalled:
                if task.status is TaskStatus.RUNNING:
                    message = f"attempt {task.attempts} was lost with its worker"
                    task.fail(now, TaskError("AttemptLost", message))
                else:
                    task.redispatch(now)
            if not stalled:
                return 0
            try:
                await self._recorder.commit(uow, saved=stalled)
            except ConcurrencyConflict:
                return 0
        return len(stalled)
