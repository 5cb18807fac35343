"""The broker ports' contract (Publisher, Consumer, Delivery), for every broker."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from adapters.system import Uuid7Generator
from application.messages import event_messages, task_topic
from application.ports.consumer import FAILED_DELIVERY_DELAY
from domain.values import TaskError
from tests.consuming import consuming
from tests.contracts.conftest import QUEUES, BrokerUnderTest
from tests.factories import T0, make_message, make_task
from tests.polling import eventually


def body(n: int) -> bytes:
    return json.dumps({"n": n}).encode()


async def test_published_messages_are_delivered_and_acked_once(broker: BrokerUnderTest) -> None:
    received: list[bytes] = []

    async def ack(delivery: Any) -> None:
        received.append(delivery.body)
        assert delivery.delivery_count == 1
        await delivery.ack()

    await broker.publisher.publish([make_message(body(i)) for i in range(20)])
    async with consuming(broker.make_consumer(), ack):
        await eventually(lambda: len(received) == 20)
    assert sorted(received) == sorted(body(i) for i in range(20))
    again: list[bytes] = []

    async def record(delivery: Any) -> None:
        again.append(delivery.body)
        await delivery.ack()

    await broker.publisher.publish([make_message(body(99))])
    async with consuming(broker.make_consumer(), record):
        await eventually(lambda: again == [body(99)])


async def test_a_nacked_message_comes_back_after_its_delay(broker: BrokerUnderTest) -> None:
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, float]] = []

    async def nack_first(delivery: Any) -> None:
        seen.append((delivery.delivery_count, loop.time()))
        if delivery.delivery_count == 1:
            await delivery.nack(timedelta(seconds=0.3))
        else:
            await delivery.ack()

    await broker.publisher.publish([make_message(body(1))])
    async with consuming(broker.make_consumer(), nack_first):
        await eventually(lambda: len(seen) == 2)
    (first, at_first), (second, at_second) = seen
    assert (first, second) == (1, 2)
    assert at_second - at_first >= 0.29


async def test_unsettled_messages_are_redelivered_when_the_consumer_dies(
    broker: BrokerUnderTest,
) -> None:
    started = asyncio.Event()

    async def hang(delivery: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    await broker.publisher.publish([make_message(body(7))])
    doomed = broker.make_consumer()
    dying = asyncio.create_task(doomed.consume(hang, 10))
    await asyncio.wait_for(started.wait(), 10)
    dying.cancel()
    await asyncio.gather(dying, return_exceptions=True)

    redelivered: list[tuple[bytes, int]] = []

    async def ack(delivery: Any) -> None:
        redelivered.append((delivery.body, delivery.delivery_count))
        await delivery.ack()

    async with consuming(broker.make_consumer(), ack):
        await eventually(lambda: len(redelivered) == 1)
    assert redelivered[0][0] == body(7)
    assert redelivered[0][1] >= 2


async def test_a_cancelled_consumer_returns_once_its_callbacks_have_ended(
    broker: BrokerUnderTest,
) -> None:
    """As a worker whose grace period is over: every callback sees its cancellation through
    (hands its task back, which takes a while) before ``consume`` returns."""
    started: list[bytes] = []
    handed_back: list[bytes] = []

    async def hand_back_when_cancelled(delivery: Any) -> None:
        started.append(delivery.body)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)
            handed_back.append(delivery.body)
            raise

    await broker.publisher.publish([make_message(body(i)) for i in range(3)])
    consuming = asyncio.create_task(broker.make_consumer().consume(hand_back_when_cancelled, 10))
    await eventually(lambda: len(started) == 3)
    consuming.cancel()
    await asyncio.gather(consuming, return_exceptions=True)
    assert sorted(handed_back) == sorted(started)


async def test_a_rejected_message_goes_to_dead_letters_and_the_queue_keeps_flowing(
    broker: BrokerUnderTest,
) -> None:
    acked: list[bytes] = []

    async def reject_poison(delivery: Any) -> None:
        if delivery.body == b"poison":
            await delivery.reject("cannot decode")
        else:
            acked.append(delivery.body)
            await delivery.ack()

    await broker.publisher.publish(
        [make_message(b"poison"), *(make_message(body(i)) for i in range(5))]
    )
    async with consuming(broker.make_consumer(), reject_poison):
        await eventually(lambda: len(acked) == 5)
        dead: list[bytes] = []

        async def dead_arrived() -> bool:
            dead[:] = await broker.dead_letters()
            return dead == [b"poison"]

        await eventually(dead_arrived)


async def test_a_delivery_whose_callback_raised_is_logged_and_delivered_again(
    broker: BrokerUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    async def fail_first(delivery: Any) -> None:
        seen.append(delivery.delivery_count)
        if delivery.delivery_count == 1:
            raise RuntimeError("a bug in the callback")
        await delivery.ack()

    await broker.publisher.publish([make_message(body(1))])
    with caplog.at_level(logging.ERROR):
        async with consuming(broker.make_consumer(), fail_first):
            await eventually(
                lambda: len(seen) == 2, within=FAILED_DELIVERY_DELAY.total_seconds() + 10
            )
    assert seen == [1, 2]
    [failure] = [record for record in caplog.records if record.exc_info]
    assert failure.exc_info is not None
    assert str(failure.exc_info[1]) == "a bug in the callback"


async def test_no_more_than_prefetch_deliveries_are_unsettled_at_once(
    broker: BrokerUnderTest,
) -> None:
    in_flight = 0
    peak = 0
    done = 0

    async def slow(delivery: Any) -> None:
        nonlocal in_flight, peak, done
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        done += 1
        await delivery.ack()

    await broker.publisher.publish([make_message(body(i)) for i in range(30)])
    async with consuming(broker.make_consumer(), slow, prefetch=3):
        await eventually(lambda: done == 30)
    assert peak == 3


async def test_stop_returns_and_leaves_unsettled_messages_for_later(
    broker: BrokerUnderTest,
) -> None:
    release = asyncio.Event()
    first_seen = asyncio.Event()

    async def wait_for_release(delivery: Any) -> None:
        first_seen.set()
        await release.wait()
        await delivery.ack()

    await broker.publisher.publish([make_message(body(1))])
    consumer = broker.make_consumer()
    running = asyncio.create_task(consumer.consume(wait_for_release, 1))
    await asyncio.wait_for(first_seen.wait(), 10)
    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(stopping, 10)
    await asyncio.wait_for(running, 10)
    await broker.publisher.publish([make_message(body(2))])
    later: list[bytes] = []

    async def ack(delivery: Any) -> None:
        later.append(delivery.body)
        await delivery.ack()

    async with consuming(broker.make_consumer(), ack):
        await eventually(lambda: later == [body(2)])


async def test_a_stop_its_caller_gives_up_on_ends_with_the_callers_cancellation(
    broker: BrokerUnderTest,
) -> None:
    """As a worker whose grace period is over while a callback still runs: its wait for
    ``stop`` ends with its timeout (which it reports), and the consumer goes on until the
    worker cancels it."""
    seen = asyncio.Event()

    async def hold(delivery: Any) -> None:
        seen.set()
        await asyncio.Event().wait()

    await broker.publisher.publish([make_message(body(1))])
    consumer = broker.make_consumer()
    running = asyncio.create_task(consumer.consume(hold, 1))
    await asyncio.wait_for(seen.wait(), 10)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await consumer.stop()
    assert not running.done()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_a_consumer_takes_the_messages_of_its_queues_only(
    broker: BrokerUnderTest,
) -> None:
    images = [make_message(body(i), topic=task_topic("images")) for i in range(3)]
    defaults = [make_message(body(10 + i), topic=task_topic("default")) for i in range(3)]
    await broker.publisher.publish([*defaults, *images])
    taken: dict[str, list[bytes]] = {"images": [], "default": []}

    def taking(queue: str) -> Callable[[Any], Awaitable[None]]:
        async def take(delivery: Any) -> None:
            taken[queue].append(delivery.body)
            await delivery.ack()

        return take

    async with consuming(broker.make_consumer(("images",)), taking("images")):
        await eventually(lambda: len(taken["images"]) == 3)
    async with consuming(broker.make_consumer(("default",)), taking("default")):
        await eventually(lambda: len(taken["default"]) == 3)
    assert sorted(taken["images"]) == sorted(message.body for message in images)
    assert sorted(taken["default"]) == sorted(message.body for message in defaults)


async def test_a_consumer_of_several_queues_takes_the_messages_of_each(
    broker: BrokerUnderTest,
) -> None:
    published = [make_message(body(i), topic=task_topic(QUEUES[i % 2])) for i in range(6)]
    await broker.publisher.publish(published)
    received: list[bytes] = []

    async def ack(delivery: Any) -> None:
        received.append(delivery.body)
        await delivery.ack()

    async with consuming(broker.make_consumer(QUEUES), ack):
        await eventually(lambda: len(received) == 6)
    assert sorted(received) == sorted(message.body for message in published)


async def test_a_queue_s_limit_bounds_its_deliveries_unsettled_at_once(
    broker: BrokerUnderTest,
) -> None:
    """A worker's slow queue (``images:1``) holds one delivery at a time, and leaves the
    rest of its prefetch to the other queues."""
    in_flight = {"images": 0, "default": 0}
    peak = dict(in_flight)
    done: list[str] = []

    def slow(queue: str) -> Callable[[Any], Awaitable[None]]:
        async def run(delivery: Any) -> None:
            in_flight[queue] += 1
            peak[queue] = max(peak[queue], in_flight[queue])
            await asyncio.sleep(0.02)
            in_flight[queue] -= 1
            done.append(queue)
            await delivery.ack()

        return run

    async def by_queue(delivery: Any) -> None:
        await slow(json.loads(delivery.body)["queue"])(delivery)

    published = [
        make_message(json.dumps({"queue": queue, "n": n}).encode(), topic=task_topic(queue))
        for n in range(6)
        for queue in QUEUES
    ]
    await broker.publisher.publish(published)
    async with consuming(broker.make_consumer(QUEUES), by_queue, 4, {"images": 1}):
        await eventually(lambda: len(done) == 12)
    assert peak["images"] == 1
    assert peak["default"] > 1


async def test_a_nacked_message_comes_back_on_its_own_queue(broker: BrokerUnderTest) -> None:
    counts: list[int] = []

    async def nack_first(delivery: Any) -> None:
        counts.append(delivery.delivery_count)
        if delivery.delivery_count == 1:
            await delivery.nack(timedelta(seconds=0.3))
        else:
            await delivery.ack()

    await broker.publisher.publish([make_message(body(1), topic=task_topic("images"))])
    async with consuming(broker.make_consumer(("images",)), nack_first):
        await eventually(lambda: counts == [1, 2])


async def test_a_message_for_a_queue_of_no_deployment_is_refused(broker: BrokerUnderTest) -> None:
    with pytest.raises(ValueError, match=r"tasks\.nope"):
        await broker.publisher.publish([make_message(body(1), topic=task_topic("nope"))])


async def test_health_check_answers(broker: BrokerUnderTest) -> None:
    await broker.publisher.check()


async def test_task_events_reach_their_subscribers_and_never_the_task_queue(
    broker: BrokerUnderTest,
) -> None:
    finished = {
        "succeeded": make_task(kind="resize"),
        "failed": make_task(kind="mail.send", max_attempts=1),
    }
    finished["succeeded"].start(T0)
    finished["succeeded"].succeed(T0, {"ok": True})
    finished["failed"].start(T0)
    finished["failed"].fail(T0, TaskError("Boom", "no"))
    events = event_messages(
        list(finished.values()),
        [event for task in finished.values() for event in task.pull_events()],
        Uuid7Generator(),
        T0,
    )
    task_message = make_message(body(1))
    await broker.publisher.publish([events[0], task_message, events[1]])

    received: list[bytes] = []

    async def ack(delivery: Any) -> None:
        received.append(delivery.body)
        await delivery.ack()

    async with consuming(broker.make_consumer(), ack):
        await eventually(lambda: received == [body(1)])
    if broker.events_heard is None:
        return  # the in-process queue: no other system can subscribe to events
    heard = broker.events_heard

    async def both_heard() -> bool:
        return len(await heard()) >= 2

    await eventually(both_heard)
    assert sorted(await heard()) == sorted(
        (
            event.body,
            {
                "type": f"task.{status}",
                "kind": finished[status].kind,
                "task_id": str(finished[status].id),
            },
        )
        for event, status in zip(events, finished, strict=True)
    )
