"""The background work of a Taskport process: the outbox relay, the due-task sweep, the
recovery sweep, the outbox prune, the task prune (with a task retention) and, in a worker
(or the API with the embedded worker), the consumer of the task queue and the worker's
heartbeat in the worker registry."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from application.errors import Unavailable
from application.ports.consumer import Delivery, DeliveryCallback
from application.use_cases.heartbeat_worker import HeartbeatWorkerHandler, WorkerIdentity
from application.use_cases.prune_outbox import PRUNE_BATCH
from application.use_cases.prune_tasks import PRUNE_BATCH as TASK_PRUNE_BATCH
from application.use_cases.relay_outbox import RELAY_BATCH
from application.use_cases.run_due_schedules import SCHEDULE_BATCH
from entrypoints.container import Container
from entrypoints.schema import prepare_schema

logger = logging.getLogger("taskport.runtime")

MAX_ERROR_BACKOFF = 30.0


class Runtime:
    """Starts and stops the loops; ``stop`` lets running tasks finish within the grace
    period, then hands the rest back to the broker for redelivery."""

    def __init__(self, container: Container, *, consume: bool, runs_pushes: bool = False) -> None:
        """``consume``: take the task queue's messages. ``runs_pushes``: run the tasks
        Pub/Sub pushes to this process's webhook. Either makes the process a worker, listed
        in the registry with a heartbeat: the recovery sweep takes a task run by a worker
        it does not know for an abandoned one."""
        self._container = container
        self._consume = consume
        self._registers = consume or runs_pushes
        self._settings = container.settings()
        self._loops: list[asyncio.Task[None]] = []
        self._consuming: asyncio.Task[None] | None = None
        self._identity: WorkerIdentity | None = None
        self._stopping = False
        self.consumer_failed = asyncio.Event()
        """Set when the consumer of the task queue ended by itself: the process runs no
        more tasks from the queue (a worker then stops, to be started again)."""

    @property
    def worker_id(self) -> str | None:
        return self._identity.id if self._identity is not None else None

    async def start(self) -> None:
        await self._prepare()
        if self._settings.in_process_broker:
            # The in-process queue starts empty: whatever was queued or running when the
            # last process stopped is dispatched again.
            recover = self._container.recover_stalled_tasks()
            started = self._container.clock().now()
            while recovered := await recover(orphaned=True, started=started):
                logger.info("recovered %d tasks left by the previous process", recovered)
        self._loops = self._start_loops()
        if self._consume:
            consumer = self._container.consumer()
            concurrency = self._settings.worker_concurrency
            limits = self._settings.queue_limits
            callback: DeliveryCallback = self._container.process_delivery()
            if len(self._settings.consumed_queues) > 1:
                callback = at_most(concurrency, callback)
            self._consuming = asyncio.create_task(
                consumer.consume(callback, concurrency, limits), name="consumer"
            )
            self._consuming.add_done_callback(self._consumer_ended)
        # What start-up made (modules, the container, the app, compiled statements) lives
        # as long as the process: frozen, the collector no longer walks it. A task or a
        # request leaves little that survives it, so the youngest generation is collected
        # after 10,000 allocations instead of 700 (the collector took an eighth of the
        # API's CPU under submit load).
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)

    async def _prepare(self) -> None:
        """The schema this code needs, and this worker in the registry: registered before
        it claims a task, as the recovery sweep takes the tasks of a worker it does not know
        as abandoned."""
        storage = self._container.storage()
        try:
            await prepare_schema(storage, self._settings)
            if self._registers:
                self._identity = WorkerIdentity(
                    id=self._container.worker_id(),
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=self._container.clock().now(),
                    concurrency=self._settings.worker_concurrency,
                    queues=self._settings.consumed_queues,
                    queue_limits=self._settings.queue_limits,
                )
                await self._container.heartbeat_worker()(self._identity, 0)
        except BaseException:
            await storage.close()
            raise

    def _start_loops(self) -> list[asyncio.Task[None]]:
        """The sweeps, the prunes, the statistics and the heartbeat, each repeated until
        the process stops. Commits do not wake the relay: their messages go by the fast
        path."""
        container, settings = self._container, self._settings
        interval = settings.sweep_interval_seconds
        recovery_pause = settings.recovery_interval_seconds
        stats_pause = settings.stats_interval_seconds
        prune_pause = settings.outbox_prune_interval_seconds
        relay = _in_batches(container.relay_outbox(), RELAY_BATCH)
        run_schedules = _in_batches(container.run_due_schedules(), SCHEDULE_BATCH)
        prune = _in_batches(container.prune_outbox(), PRUNE_BATCH)
        loops = [
            ("outbox relay", "relay", relay, interval),
            ("due-task sweep", "sweep", container.promote_due_tasks(), interval),
            ("schedule sweep", "schedules", run_schedules, interval),
            ("recovery sweep", "recovery", container.recover_stalled_tasks(), recovery_pause),
            ("outbox prune", "outbox-prune", prune, prune_pause),
            ("statistics", "statistics", self._observe_stats, stats_pause),
        ]
        if settings.task_retention_seconds is not None:
            prune_tasks = _in_batches(container.prune_tasks(), TASK_PRUNE_BATCH)
            loops.append(("task prune", "task-prune", prune_tasks, prune_pause))
        started = [
            asyncio.create_task(_repeat(what, step, _pause(seconds)), name=name)
            for what, name, step, seconds in loops
        ]
        if self._identity is not None:
            heartbeat = container.heartbeat_worker()
            started.append(
                asyncio.create_task(self._beat(heartbeat, self._identity), name="heartbeat")
            )
            logger.info("worker %s registered", self._identity.id)
        return started

    async def _observe_stats(self) -> int:
        """Refreshes the deployment's gauges (stored tasks, queue lag, outbox backlog,
        schedule lag) while this process holds the statistics lease; 0: one pass done."""
        observed = await self._container.observe_deployment()()
        self._container.metrics().observe_deployment(observed)
        return 0

    def _consumer_ended(self, consuming: asyncio.Task[None]) -> None:
        if consuming.cancelled():
            return
        error = consuming.exception()
        if self._stopping:
            if error is not None:
                logger.warning(
                    "the consumer of the task queue failed as it stopped", exc_info=error
                )
            return
        logger.error(
            "the consumer of the task queue stopped: this process takes no more tasks from it",
            exc_info=error,
        )
        self.consumer_failed.set()

    async def stop(self) -> None:
        self._stopping = True
        grace = self._settings.shutdown_grace_seconds
        if self._consuming is not None:
            consumer = self._container.consumer()
            try:
                async with asyncio.timeout(grace):
                    await consumer.stop()
            except TimeoutError:
                logger.warning(
                    "tasks still running after the grace period of %gs are handed back: %d",
                    grace,
                    self._container.run_task().in_progress,
                )
            self._consuming.cancel()
            await asyncio.wait({self._consuming})  # a consumer that failed was logged
        # The heartbeat goes on through the grace period: a worker finishing its tasks is
        # not lost.
        await _cancel_until_done(self._loops)
        # Before the storage closes, within the grace period: the runs the shutdown cancelled
        # (the consumer's, and the Pub/Sub pushes whose requests the server cut) hand their
        # tasks back or write the outcomes they had, and the messages being published after
        # their commit are marked sent (else the next sweep publishes them again).
        try:
            async with asyncio.timeout(grace):
                await self._container.run_task().drain()
                await self._container.publish_committed().drain()
        except TimeoutError:
            logger.warning(
                "writes still under way %gs after the grace period are cut: tasks not yet "
                "handed back are left to the recovery sweep, messages not yet marked sent "
                "to the relay sweep",
                grace,
            )
        try:
            await self._container.observe_deployment().hand_over()
        except Exception as exc:
            logger.warning("the statistics lease not released: %s", exc)
        if self._identity is not None:
            try:
                await self._container.sign_off_worker()(self._identity)
            except Exception as exc:
                logger.warning("worker %s not removed from the registry: %s", self.worker_id, exc)
        await self._container.publisher().close()
        if self._consume:
            await self._container.consumer().close()
        await self._container.storage().close()

    async def _beat(self, heartbeat: HeartbeatWorkerHandler, identity: WorkerIdentity) -> None:
        # The tasks running here: those of the queue's deliveries and of Pub/Sub's pushes.
        run_task = self._container.run_task()
        while True:
            await asyncio.sleep(self._settings.heartbeat_seconds)
            try:
                await heartbeat(identity, run_task.in_progress)
            except Exception as exc:
                logger.warning("heartbeat of worker %s failed: %s", identity.id, exc)


async def _cancel_until_done(tasks: list[asyncio.Task[None]]) -> None:
    """Cancels the tasks, again while any is still running: a driver that swallows a
    cancellation in flight (PyMongo's async client can) must not hold up the shutdown."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    await asyncio.gather(*tasks, return_exceptions=True)


def _in_batches(run: Callable[[int], Awaitable[int]], batch: int) -> Callable[[], Awaitable[int]]:
    """A step for ``_repeat``: one pass of ``run`` over up to ``batch`` items. A full batch
    may have left more behind, and the next pass follows at once; a pass that found fewer
    found all there was, and the next one waits for the pause."""

    async def step() -> int:
        return int(await run(batch) == batch)

    return step


def _pause(seconds: float) -> Callable[[], Awaitable[None]]:
    return lambda: asyncio.sleep(seconds)


async def _repeat(
    name: str, step: Callable[[], Awaitable[int]], pause: Callable[[], Awaitable[None]]
) -> None:
    """Runs ``step`` until it finds nothing to do, pauses, and again; backs off on errors."""
    failures = 0
    while True:
        try:
            while await step():
                pass
            failures = 0
            await pause()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            backoff = min(0.5 * 2 ** min(failures, 10), MAX_ERROR_BACKOFF)
            if isinstance(exc, Unavailable):
                logger.warning("%s: %s; retrying in %.1fs", name, exc, backoff)
            else:
                logger.exception("%s failed; retrying in %.1fs", name, backoff)
            await asyncio.sleep(backoff)


def at_most(runs: int, callback: DeliveryCallback) -> DeliveryCallback:
    """``callback`` for at most ``runs`` deliveries at once. A consumer of several queues
    holds up to ``runs`` deliveries of each (brokers count their prefetch per queue): the
    worker still runs ``runs`` tasks at a time in all."""
    slots = asyncio.Semaphore(runs)

    async def limited(delivery: Delivery) -> None:
        async with slots:
            await callback(delivery)

    return limited
