"""Publisher confirms arrive one by one or several at once, as acks or nacks."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import pytest
from pika.spec import Basic, BasicProperties

from adapters.brokers.rabbitmq.publisher import RabbitMqPublisher
from adapters.brokers.rabbitmq.session import AmqpSession, all_confirmed
from application.errors import BrokerUnavailable, PartlyPublished
from tests.factories import make_message
from tests.polling import eventually


class FakeChannel:
    def basic_publish(self, *args: Any, **kwargs: Any) -> None:
        pass


def session_with(published: int) -> tuple[AmqpSession, list[asyncio.Future[None]]]:
    session = AmqpSession(
        connection=SimpleNamespace(writes_held=contextlib.nullcontext),
        lost=asyncio.get_running_loop().create_future(),
    )
    session._channel = FakeChannel()
    return session, [
        session.publish("q", b"{}", BasicProperties(message_id=str(n))) for n in range(published)
    ]


def confirm(session: AmqpSession, method: Any) -> None:
    session._on_confirm(SimpleNamespace(method=method))


async def test_a_multiple_ack_confirms_every_message_up_to_its_tag() -> None:
    session, confirmations = session_with(5)
    confirm(session, Basic.Ack(delivery_tag=3, multiple=True))
    assert [c.done() for c in confirmations] == [True, True, True, False, False]
    confirm(session, Basic.Ack(delivery_tag=5, multiple=True))
    await all_confirmed(confirmations)


async def test_a_nack_fails_the_publish() -> None:
    session, confirmations = session_with(3)
    confirm(session, Basic.Ack(delivery_tag=1, multiple=False))
    confirm(session, Basic.Nack(delivery_tag=2, multiple=False))
    confirm(session, Basic.Ack(delivery_tag=3, multiple=False))
    with pytest.raises(BrokerUnavailable, match="1 of 3"):
        await all_confirmed(confirmations)


async def test_a_lost_session_fails_every_unconfirmed_publish() -> None:
    session, confirmations = session_with(4)
    confirm(session, Basic.Ack(delivery_tag=2, multiple=True))
    session.lost.set_result("connection lost: gone")
    await asyncio.sleep(0)  # the loss is noticed by a done-callback
    with pytest.raises(BrokerUnavailable, match="2 of 4"):
        await all_confirmed(confirmations)
    with pytest.raises(BrokerUnavailable, match="gone"):
        session.publish("q", b"{}", BasicProperties())


async def test_a_publisher_names_the_messages_confirmed_of_a_batch_not_confirmed_whole() -> None:
    """So the relay marks those sent and does not publish them again."""
    session, _ = session_with(0)
    publisher = RabbitMqPublisher.from_url("amqp://guest:guest@127.0.0.1:1/")

    async def connected(wait: float) -> AmqpSession:
        return session

    publisher._connector.session = connected  # type: ignore[method-assign]
    messages = [make_message() for _ in range(3)]
    publishing = asyncio.create_task(publisher.publish(messages))
    await eventually(lambda: len(session._confirms) == 3)
    confirm(session, Basic.Ack(delivery_tag=1, multiple=False))
    confirm(session, Basic.Nack(delivery_tag=2, multiple=False))
    confirm(session, Basic.Ack(delivery_tag=3, multiple=False))
    with pytest.raises(PartlyPublished, match="1 of 3") as raised:
        await publishing
    assert raised.value.published == {messages[0].id, messages[2].id}
