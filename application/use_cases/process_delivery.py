"""Settle one broker delivery: run the task it names, then ack, nack or dead-letter it."""

from __future__ import annotations

import logging
from datetime import timedelta

from application import correlation
from application.errors import PoisonMessage, Unavailable
from application.messages import RunTaskMessage
from application.outage_log import OutageLog
from application.ports.consumer import Delivery
from application.use_cases.run_task import Outcome, RunTask, RunTaskHandler

logger = logging.getLogger("taskport.worker")

UNEXPECTED_ERROR_DELAY = timedelta(seconds=5)
OUTAGE_MAX_DELAY = timedelta(seconds=30)
"""The longest wait before a delivery comes again while storage or broker is unavailable:
the delay doubles with each delivery from the one the outage suggests, up to this. A
two-minute outage costs a message about eight deliveries, not a hundred (the limit that
makes it poison), and work resumes at most this long after the outage ends."""


class ProcessDeliveryHandler:
    """The worker's callback for every delivery, whichever broker delivered it.

    - undecodable, unknown task, or delivered more than ``max_deliveries`` times: rejected
      to the dead-letter destination, so a poison message never blocks the queue;
    - storage or broker unavailable: nacked, delivered again after a delay that doubles
      with each delivery, from the one suggested up to ``OUTAGE_MAX_DELAY`` (logged by an
      ``OutageLog``: the first, then one in a hundred, and the outage's end);
    - task held by another worker: nacked until that worker's lease ends;
    - otherwise acked, after the task's new state is committed.
    """

    def __init__(self, run_task: RunTaskHandler, max_deliveries: int = 100) -> None:
        self._run_task = run_task
        self._max_deliveries = max_deliveries
        self._outage = OutageLog(logger, "deliveries")

    async def __call__(self, delivery: Delivery) -> None:
        try:
            message = RunTaskMessage.decode(delivery.body)
        except PoisonMessage as exc:
            await self._dead_letter(delivery, str(exc))
            return
        correlation.request_id.set(message.request_id)
        correlation.task_id.set(str(message.task_id))
        if delivery.delivery_count > self._max_deliveries:
            await self._dead_letter(delivery, f"delivered {delivery.delivery_count} times")
            return
        try:
            result = await self._run_task(RunTask(message.task_id))
        except Unavailable as exc:
            delay = _outage_delay(delivery.delivery_count, exc.retry_after_seconds)
            self._outage.held_back(
                "will retry task %s in %gs: %s", message.task_id, delay.total_seconds(), exc
            )
            await delivery.nack(delay)
            return
        except Exception:
            logger.exception("unexpected error running task %s", message.task_id)
            await delivery.nack(UNEXPECTED_ERROR_DELAY)
            return
        self._outage.over("deliveries run again")
        if result.outcome is Outcome.UNKNOWN_TASK:
            await self._dead_letter(delivery, f"unknown task {message.task_id}")
        elif result.outcome is Outcome.BUSY:
            await delivery.nack(result.retry_after or timedelta(seconds=1))
        else:
            await delivery.ack()

    @staticmethod
    async def _dead_letter(delivery: Delivery, reason: str) -> None:
        named = delivery.message_id or "without an id"
        logger.error("dead-lettering message %s: %s", named, reason)
        await delivery.reject(reason)


def _outage_delay(delivery_count: int, suggested_seconds: float) -> timedelta:
    suggested = timedelta(seconds=suggested_seconds)
    doubled = suggested * (1 << min(max(delivery_count - 1, 0), 16))
    return max(suggested, min(doubled, OUTAGE_MAX_DELAY))
