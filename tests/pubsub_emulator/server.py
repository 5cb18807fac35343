"""A small in-memory Pub/Sub: the part of the Publisher and Subscriber gRPC services that
Taskport uses, served to the real google-cloud-pubsub client (``PUBSUB_EMULATOR_HOST``).

- topics and subscriptions (ack deadline, dead-letter policy, retry policy, push config);
- publish, pull, streaming pull (flow control by ``max_outstanding_messages``; acks and
  deadline changes on the request stream or by the unary calls);
- a delivery not acked before its deadline, or nacked (deadline 0), is delivered again
  after the retry policy's backoff; ``delivery_attempt`` counts deliveries when the
  subscription has a dead-letter policy, and after ``max_delivery_attempts`` the message
  goes to the dead-letter topic instead;
- push subscriptions get the real envelope POSTed to their endpoint: 102/2xx acks, any
  other answer (or none) is a nack.

Outstanding deliveries outlive the stream that received them (as on Pub/Sub): their ack
ids stay valid until the deadline passes.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
from attrs import define, field
from google.pubsub_v1 import types

logger = logging.getLogger("taskport.pubsub_emulator")

TICK_SECONDS = 0.02
DEFAULT_ACK_DEADLINE = 10
PUSH_CONCURRENCY = 8
PUSH_ACK_STATUSES = frozenset({102, 200, 201, 202, 204})
PULL_WAIT_SECONDS = 0.5
# Without a retry policy Pub/Sub redelivers at once; a failing push endpoint still backs off.
PUSH_DEFAULT_BACKOFF = (0.1, 10.0)


@define
class _Pending:
    message: types.PubsubMessage
    attempts: int = 0
    available_at: float = 0.0


@define
class _Lease:
    pending: _Pending
    deadline: float
    stream: int | None


@define
class _Subscription:
    proto: types.Subscription
    ready: list[_Pending] = field(factory=list)
    leased: dict[str, _Lease] = field(factory=dict)
    pushing: int = 0

    @property
    def max_attempts(self) -> int:
        policy = self.proto.dead_letter_policy
        return policy.max_delivery_attempts or 5 if policy and policy.dead_letter_topic else 0

    def backoff(self, attempts: int) -> float:
        policy = self.proto.retry_policy
        if policy and (policy.minimum_backoff or policy.maximum_backoff):
            low = _seconds(policy.minimum_backoff) if policy.minimum_backoff else 10.0
            high = _seconds(policy.maximum_backoff) if policy.maximum_backoff else 600.0
        elif self.proto.push_config.push_endpoint:
            low, high = PUSH_DEFAULT_BACKOFF
        else:
            return 0.0
        return float(min(low * 2 ** max(attempts - 1, 0), high))


def _seconds(duration: Any) -> float:
    if hasattr(duration, "total_seconds"):
        return float(duration.total_seconds())
    return float(duration.seconds + duration.nanos / 1e9)


class PubSubState:
    """Every topic, subscription and message; one lock guards all of it."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.topics: dict[str, types.Topic] = {}
        self.subscriptions: dict[str, _Subscription] = {}
        self._ids = itertools.count(1)
        self._streams = itertools.count(1)

    def new_stream(self) -> int:
        return next(self._streams)

    # Publisher ------------------------------------------------------------------------

    def publish(self, topic: str, messages: list[types.PubsubMessage]) -> list[str]:
        with self.lock:
            if topic not in self.topics:
                raise KeyError(topic)
            ids = []
            for message in messages:
                stored = types.PubsubMessage(
                    data=message.data,
                    attributes=dict(message.attributes),
                    ordering_key=message.ordering_key,
                    message_id=str(next(self._ids)),
                    publish_time=datetime.now(UTC),
                )
                ids.append(stored.message_id)
                for subscription in self.subscriptions.values():
                    if subscription.proto.topic == topic:
                        subscription.ready.append(_Pending(stored))
            self.lock.notify_all()
            return ids

    # Subscriber -----------------------------------------------------------------------

    def take(
        self, name: str, limit: int, stream: int | None, deadline: int | None = None
    ) -> list[types.ReceivedMessage]:
        """Leases up to ``limit`` due messages of subscription ``name``; the lock is held."""
        subscription = self.subscriptions[name]
        now = time.monotonic()
        taken: list[types.ReceivedMessage] = []
        keep: list[_Pending] = []
        for pending in subscription.ready:
            if len(taken) >= limit or pending.available_at > now:
                keep.append(pending)
                continue
            if subscription.max_attempts and pending.attempts >= subscription.max_attempts:
                self._dead_letter(subscription, pending)
                continue
            pending.attempts += 1
            ack_id = f"{name}/{pending.message.message_id}/{pending.attempts}/{next(self._ids)}"
            seconds = deadline or subscription.proto.ack_deadline_seconds or DEFAULT_ACK_DEADLINE
            subscription.leased[ack_id] = _Lease(pending, now + seconds, stream)
            taken.append(
                types.ReceivedMessage(
                    ack_id=ack_id,
                    message=pending.message,
                    delivery_attempt=pending.attempts if subscription.max_attempts else 0,
                )
            )
        subscription.ready = keep
        return taken

    def _dead_letter(self, subscription: _Subscription, pending: _Pending) -> None:
        topic = subscription.proto.dead_letter_policy.dead_letter_topic
        for other in self.subscriptions.values():
            if other.proto.topic == topic:
                other.ready.append(_Pending(pending.message))
        logger.info(
            "message %s dead-lettered to %s after %d attempts",
            pending.message.message_id,
            topic,
            pending.attempts,
        )

    def acknowledge(self, ack_ids: list[str]) -> None:
        with self.lock:
            for ack_id in ack_ids:
                for subscription in self._owners(ack_id):
                    subscription.leased.pop(ack_id, None)

    def modify(self, ack_ids: list[str], seconds: int) -> None:
        with self.lock:
            now = time.monotonic()
            for ack_id in ack_ids:
                for subscription in self._owners(ack_id):
                    lease = subscription.leased.get(ack_id)
                    if lease is None:
                        continue
                    if seconds <= 0:
                        self._release(subscription, ack_id, now)
                    else:
                        lease.deadline = now + seconds
            self.lock.notify_all()

    def _owners(self, ack_id: str) -> list[_Subscription]:
        name = ack_id.rsplit("/", 3)[0]
        subscription = self.subscriptions.get(name)
        return [subscription] if subscription is not None else []

    def _release(self, subscription: _Subscription, ack_id: str, now: float) -> None:
        lease = subscription.leased.pop(ack_id)
        lease.pending.available_at = now + subscription.backoff(lease.pending.attempts)
        subscription.ready.append(lease.pending)

    def outstanding(self, name: str, stream: int) -> int:
        subscription = self.subscriptions.get(name)
        if subscription is None:
            return 0
        return sum(1 for lease in subscription.leased.values() if lease.stream == stream)

    def expire(self) -> None:
        with self.lock:
            now = time.monotonic()
            for subscription in self.subscriptions.values():
                for ack_id, lease in list(subscription.leased.items()):
                    if lease.deadline <= now:
                        self._release(subscription, ack_id, now)
            self.lock.notify_all()


class _Servicer:
    def __init__(self, state: PubSubState) -> None:
        self.state = state

    # Publisher ------------------------------------------------------------------------

    def create_topic(self, request: types.Topic, context: grpc.ServicerContext) -> types.Topic:
        with self.state.lock:
            if request.name in self.state.topics:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"topic {request.name} exists")
            self.state.topics[request.name] = request
        return request

    def get_topic(self, request: types.GetTopicRequest, context: grpc.ServicerContext) -> Any:
        with self.state.lock:
            topic = self.state.topics.get(request.topic)
        if topic is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"topic {request.topic} not found")
        return topic

    def delete_topic(
        self, request: types.DeleteTopicRequest, context: grpc.ServicerContext
    ) -> None:
        with self.state.lock:
            if self.state.topics.pop(request.topic, None) is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"topic {request.topic} not found")

    def publish(
        self, request: types.PublishRequest, context: grpc.ServicerContext
    ) -> types.PublishResponse:
        try:
            ids = self.state.publish(request.topic, list(request.messages))
        except KeyError:
            context.abort(grpc.StatusCode.NOT_FOUND, f"topic {request.topic} not found")
        return types.PublishResponse(message_ids=ids)

    # Subscriber -----------------------------------------------------------------------

    def create_subscription(
        self, request: types.Subscription, context: grpc.ServicerContext
    ) -> types.Subscription:
        with self.state.lock:
            if request.name in self.state.subscriptions:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"subscription {request.name} exists")
            if request.topic not in self.state.topics:
                context.abort(grpc.StatusCode.NOT_FOUND, f"topic {request.topic} not found")
            deadline = request.ack_deadline_seconds or DEFAULT_ACK_DEADLINE
            if not 10 <= deadline <= 600:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ack deadline must be 10..600 s")
            request.ack_deadline_seconds = deadline
            self.state.subscriptions[request.name] = _Subscription(request)
        return request

    def get_subscription(
        self, request: types.GetSubscriptionRequest, context: grpc.ServicerContext
    ) -> Any:
        with self.state.lock:
            subscription = self.state.subscriptions.get(request.subscription)
        if subscription is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"subscription {request.subscription}")
        return subscription.proto

    def delete_subscription(
        self, request: types.DeleteSubscriptionRequest, context: grpc.ServicerContext
    ) -> None:
        with self.state.lock:
            if self.state.subscriptions.pop(request.subscription, None) is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"subscription {request.subscription}")

    def pull(self, request: types.PullRequest, context: grpc.ServicerContext) -> Any:
        give_up = time.monotonic() + (0 if request.return_immediately else PULL_WAIT_SECONDS)
        with self.state.lock:
            while True:
                if request.subscription not in self.state.subscriptions:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"subscription {request.subscription}")
                taken = self.state.take(request.subscription, request.max_messages or 1, None)
                if taken or time.monotonic() >= give_up:
                    return types.PullResponse(received_messages=taken)
                self.state.lock.wait(TICK_SECONDS)

    def acknowledge(self, request: types.AcknowledgeRequest, context: grpc.ServicerContext) -> None:
        self.state.acknowledge(list(request.ack_ids))

    def modify_ack_deadline(
        self, request: types.ModifyAckDeadlineRequest, context: grpc.ServicerContext
    ) -> None:
        if not 0 <= request.ack_deadline_seconds <= 600:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ack deadline must be 0..600 s")
        self.state.modify(list(request.ack_ids), request.ack_deadline_seconds)

    def streaming_pull(
        self, requests: Iterator[types.StreamingPullRequest], context: grpc.ServicerContext
    ) -> Iterator[types.StreamingPullResponse]:
        first = next(requests)
        name = first.subscription
        with self.state.lock:
            if name not in self.state.subscriptions:
                context.abort(grpc.StatusCode.NOT_FOUND, f"subscription {name} not found")
        stream = self.state.new_stream()
        limit = first.max_outstanding_messages or 1000
        deadline = first.stream_ack_deadline_seconds or None
        closed = threading.Event()
        self._apply(first)

        def read_rest() -> None:
            try:
                for request in requests:
                    self._apply(request)
            except grpc.RpcError:
                pass
            finally:
                closed.set()
                with self.state.lock:
                    self.state.lock.notify_all()

        threading.Thread(target=read_rest, name=f"streaming-pull-{stream}", daemon=True).start()
        while context.is_active() and not closed.is_set():
            with self.state.lock:
                if name not in self.state.subscriptions:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"subscription {name} was deleted")
                room = limit - self.state.outstanding(name, stream)
                taken = self.state.take(name, room, stream, deadline) if room > 0 else []
                if not taken:
                    self.state.lock.wait(TICK_SECONDS * 5)
                    continue
            yield types.StreamingPullResponse(received_messages=taken)

    def _apply(self, request: types.StreamingPullRequest) -> None:
        if request.ack_ids:
            self.state.acknowledge(list(request.ack_ids))
        for ack_id, seconds in zip(
            request.modify_deadline_ack_ids, request.modify_deadline_seconds, strict=False
        ):
            self.state.modify([ack_id], seconds)


class _Pusher:
    """Delivers the messages of push subscriptions to their endpoints."""

    def __init__(self, state: PubSubState) -> None:
        self.state = state
        self._pool = futures.ThreadPoolExecutor(PUSH_CONCURRENCY, thread_name_prefix="push")
        self._http = httpx.Client(timeout=DEFAULT_ACK_DEADLINE)

    def dispatch(self) -> None:
        with self.state.lock:
            for name, subscription in self.state.subscriptions.items():
                if not subscription.proto.push_config.push_endpoint:
                    continue
                room = PUSH_CONCURRENCY - subscription.pushing
                for received in self.state.take(name, room, None) if room > 0 else []:
                    subscription.pushing += 1
                    self._pool.submit(self._push, subscription, received)

    def _push(self, subscription: _Subscription, received: types.ReceivedMessage) -> None:
        config = subscription.proto.push_config
        message = received.message
        envelope: dict[str, Any] = {
            "message": {
                "data": base64.b64encode(message.data).decode(),
                "attributes": dict(message.attributes),
                "messageId": message.message_id,
                "message_id": message.message_id,
                "publishTime": message.publish_time.isoformat().replace("+00:00", "Z"),
            },
            "subscription": subscription.proto.name,
        }
        if received.delivery_attempt:
            envelope["deliveryAttempt"] = received.delivery_attempt
        try:
            response = self._http.post(
                config.push_endpoint,
                content=json.dumps(envelope),
                headers={"Content-Type": "application/json"},
            )
            acked = response.status_code in PUSH_ACK_STATUSES
        except httpx.HTTPError as exc:
            logger.info("push to %s failed: %r", config.push_endpoint, exc)
            acked = False
        finally:
            with self.state.lock:
                subscription.pushing -= 1
        if acked:
            self.state.acknowledge([received.ack_id])
        else:
            self.state.modify([received.ack_id], 0)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()


def _unary(method: Callable[..., Any], request: Any, response: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        method,
        request_deserializer=request.deserialize,
        response_serializer=response.serialize if response is not None else (lambda _: b""),
    )


class PubSubEmulator:
    """The emulator on ``host:port`` (port 0: a free one); ``start`` and ``stop``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = PubSubState()
        servicer = _Servicer(self.state)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        publisher = {
            "CreateTopic": _unary(servicer.create_topic, types.Topic, types.Topic),
            "GetTopic": _unary(servicer.get_topic, types.GetTopicRequest, types.Topic),
            "DeleteTopic": _unary(servicer.delete_topic, types.DeleteTopicRequest, None),
            "Publish": _unary(servicer.publish, types.PublishRequest, types.PublishResponse),
        }
        subscriber = {
            "CreateSubscription": _unary(
                servicer.create_subscription, types.Subscription, types.Subscription
            ),
            "GetSubscription": _unary(
                servicer.get_subscription, types.GetSubscriptionRequest, types.Subscription
            ),
            "DeleteSubscription": _unary(
                servicer.delete_subscription, types.DeleteSubscriptionRequest, None
            ),
            "Pull": _unary(servicer.pull, types.PullRequest, types.PullResponse),
            "Acknowledge": _unary(servicer.acknowledge, types.AcknowledgeRequest, None),
            "ModifyAckDeadline": _unary(
                servicer.modify_ack_deadline, types.ModifyAckDeadlineRequest, None
            ),
            "StreamingPull": grpc.stream_stream_rpc_method_handler(
                servicer.streaming_pull,
                request_deserializer=types.StreamingPullRequest.deserialize,
                response_serializer=types.StreamingPullResponse.serialize,
            ),
        }
        self._server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler("google.pubsub.v1.Publisher", publisher),
                grpc.method_handlers_generic_handler("google.pubsub.v1.Subscriber", subscriber),
            )
        )
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        self.host = f"{host}:{self.port}"
        self._pusher = _Pusher(self.state)
        self._stopping = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="pubsub-emulator", daemon=True)

    def start(self) -> PubSubEmulator:
        self._server.start()
        self._ticker.start()
        return self

    def _tick(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            try:
                self.state.expire()
                self._pusher.dispatch()
            except Exception:
                logger.exception("emulator tick failed")

    def stop(self) -> None:
        self._stopping.set()
        self._server.stop(grace=0).wait()
        self._pusher.close()

    def wait(self) -> None:
        self._server.wait_for_termination()
