"""A message the pull consumer rejects is kept on the dead-letter topic with where it came
from, as the push webhook keeps the ones it rejects."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.brokers.pubsub import PubSubConsumer, PubSubOptions, PubSubPublisher
from application.errors import BrokerUnavailable
from application.ports.outbox import OutboxMessage
from tests.consuming import consuming
from tests.factories import make_message
from tests.polling import eventually
from tests.pubsub import new_project, pull_all


@pytest.mark.usefixtures("pubsub_emulator")
async def test_a_rejected_message_is_dead_lettered_with_its_source() -> None:
    options = PubSubOptions(new_project(), create=True)
    publisher, consumer = PubSubPublisher(options), PubSubConsumer(options)
    rejected: list[str] = []

    async def reject(delivery: Any) -> None:
        rejected.append(delivery.message_id)
        await delivery.reject("cannot decode")

    poison = make_message(b"poison")
    dead = await dead_letters_of(options, publisher, consumer, poison, reject)
    copy = dead[0].message
    source_id = copy.attributes["taskport_source_message_id"]
    assert (copy.data, rejected) == (b"poison", [str(poison.id)])
    assert source_id and source_id != str(poison.id)  # Pub/Sub's own id of the original
    assert copy.attributes["taskport_message_id"] == str(poison.id)
    assert copy.attributes["taskport_source_subscription"] == options.subscription_path
    assert copy.attributes["taskport_delivery_attempt"] == "1"
    assert copy.attributes["taskport_dead_letter_reason"] == "cannot decode"


@pytest.mark.usefixtures("pubsub_emulator")
async def test_a_message_whose_copy_was_refused_is_handed_back_and_rejected_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = PubSubOptions(new_project(), create=True)
    publisher, consumer = PubSubPublisher(options), PubSubConsumer(options)
    put = consumer.dead_letters.put
    refused: list[str] = []

    async def refuse_the_first(body: bytes, attributes: Any, reason: str) -> None:
        if not refused:
            refused.append(reason)
            raise BrokerUnavailable("the dead-letter topic is unreachable")
        await put(body, attributes, reason)

    monkeypatch.setattr(consumer.dead_letters, "put", refuse_the_first)
    attempts: list[int] = []

    async def reject(delivery: Any) -> None:
        attempts.append(delivery.delivery_count)
        await delivery.reject("cannot decode")

    dead = await dead_letters_of(options, publisher, consumer, make_message(b"poison"), reject)
    assert attempts == [1, 2]
    assert [copy.message.data for copy in dead] == [b"poison"]


async def dead_letters_of(
    options: PubSubOptions,
    publisher: PubSubPublisher,
    consumer: PubSubConsumer,
    message: OutboxMessage,
    callback: Any,
) -> list[Any]:
    """Publishes ``message``, consumes with ``callback`` until the dead-letter topic holds
    a copy, and returns what it holds then; closes the consumer and the publisher."""
    await publisher.publish([message])
    dead: list[Any] = []

    async def dead_lettered() -> bool:
        dead.extend(await asyncio.to_thread(pull_all, options.dead_letter_subscription_path))
        return bool(dead)

    try:
        async with consuming(consumer, callback):
            await eventually(dead_lettered)
    finally:
        await consumer.close()
        await publisher.close()
    return dead
