"""Keeps an AMQP session open: connects with exponential backoff and jitter, declares
the topology, and connects again whenever the session is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_random_exponential

from adapters.brokers.rabbitmq.options import RabbitMqOptions, Topology
from adapters.brokers.rabbitmq.session import AmqpSession
from application.errors import BrokerUnavailable

logger = logging.getLogger("taskport.rabbitmq")

MAX_BACKOFF_SECONDS = 5.0


class Connector:
    """The one session a publisher or consumer uses, kept open in the background."""

    def __init__(self, options: RabbitMqOptions, purpose: str) -> None:
        self._options = options
        self._purpose = purpose
        self._session: AmqpSession | None = None
        self._changed = asyncio.Condition()
        self._keeper: asyncio.Task[None] | None = None
        self.last_error = "not connected yet"

    async def session(self, wait: float | None) -> AmqpSession:
        """The open session, waiting up to ``wait`` seconds (forever if ``None``) for one;
        raises ``BrokerUnavailable`` when there is none by then."""
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name=f"rabbitmq {self._purpose}")
        try:
            async with asyncio.timeout(wait), self._changed:
                await self._changed.wait_for(self._is_connected)
        except TimeoutError:
            raise BrokerUnavailable(self.last_error) from None
        assert self._session is not None
        return self._session

    def _is_connected(self) -> bool:
        return self._session is not None and self._session.is_open

    async def _keep(self) -> None:
        while True:
            session = await self._connect()
            async with self._changed:
                self._session = session
                self._changed.notify_all()
            logger.info("RabbitMQ %s connected", self._purpose)
            reason = await session.lost
            self._session = None
            self.last_error = reason
            logger.warning("RabbitMQ %s: %s; reconnecting", self._purpose, reason)
            await session.close()

    async def _connect(self) -> AmqpSession:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),  # a keeper that gave up would strand waiters
            wait=wait_random_exponential(multiplier=0.1, max=MAX_BACKOFF_SECONDS),
            before_sleep=self._note_failure,
        )
        async for attempt in retrying:
            with attempt:
                session = await AmqpSession.open(self._options.parameters())
                try:
                    await declare(session, self._options.topology)
                except BaseException:
                    await session.close()
                    raise
                return session
        raise AssertionError("unreachable: tenacity retries forever")

    def _note_failure(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.last_error = error.reason if isinstance(error, BrokerUnavailable) else repr(error)
        logger.warning(
            "RabbitMQ %s unavailable (attempt %d): %s",
            self._purpose,
            state.attempt_number,
            self.last_error,
        )

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self._session is not None:
            await self._session.close()
            self._session = None


async def declare(session: AmqpSession, topology: Topology) -> None:
    """Declares Taskport's queues (each task queue with its delay tiers) and its events
    exchange; declaring them again with the same arguments is a no-op."""
    await session.declare_exchange(topology.events_exchange, "topic")
    await session.declare_queue(topology.dead_letter_queue, {"x-queue-type": topology.queue_type})
    for queue in topology.queues:
        tasks = topology.task_queue(queue)
        await session.declare_queue(tasks, {"x-queue-type": topology.queue_type})
        for tier in topology.delay_tiers:
            await session.declare_queue(
                topology.delay_queue(tier, queue), _delay_arguments(tier, tasks)
            )


def _delay_arguments(tier: timedelta, target: str) -> dict[str, Any]:
    return {
        "x-queue-type": "classic",
        "x-message-ttl": int(tier.total_seconds() * 1000),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
    }
