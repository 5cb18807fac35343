"""One AMQP connection and one channel on the running event loop, with pika's
callbacks turned into awaitables and publisher confirms pipelined."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pika
from pika import frame, spec
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties

from application.errors import BrokerUnavailable

logger = logging.getLogger("taskport.rabbitmq")

CLOSE_TIMEOUT = 5.0
# A blocked connection (a resource alarm) would otherwise hold a publish forever.
CONFIRM_TIMEOUT = 10.0

MessageCallback = Callable[[Channel, Basic.Deliver, BasicProperties, bytes], None]
# What pika's field-table decoder raises for a table it cannot turn into Python values: a
# timestamp past the year 9999, tables or arrays nested deeper than Python recurses.
UNDECODABLE_TABLE = (RecursionError, ValueError, OverflowError, OSError)


class UndecodableHeaders(dict[str, Any]):
    """The headers of a message whose field table pika cannot decode: none, and why."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class _Connection(AsyncioConnection):
    """pika's connection, except that:

    - a message whose headers pika cannot decode arrives with ``UndecodableHeaders``. pika
      raises out of its frame decoder instead, which closes the connection; the broker
      then delivers the same message on the next one, and the consumer never gets past it;
    - frames can be held and written together (``writes_held``)."""

    # pika's own frame reading (1.4), which no public hook reaches; the integration tests
    # of undecodable headers fail if a pika release changes it.
    def _read_frame(self) -> tuple[int, Any]:
        try:
            return super()._read_frame()
        except UNDECODABLE_TABLE as exc:
            return _header_without_table(bytes(self._frame_buffer), exc)

    _held: list[bytes] | None = None

    @contextlib.contextmanager
    def writes_held(self) -> Iterator[None]:
        """Frames written inside go to the socket as one write when it ends, at once.
        pika writes each frame alone, a system call each (and a read each for RabbitMQ):
        a publish is three frames, a batch of them hundreds."""
        if self._held is not None:  # already held by an outer block
            yield
            return
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            if held and not self.is_closed:
                super()._adapter_emit_data(b"".join(held))
                # pika sends when the event loop next reports the socket writable, which
                # it is now: sent at once, a task's message does not wait for the HTTP
                # answer to be written first. (pika's handler of that report, 1.4; it
                # leaves what the socket does not take for that report, as it would.)
                self._transport._on_socket_writable()

    # pika's hook by which its connection hands a marshalled frame to the transport (1.4).
    def _adapter_emit_data(self, data: bytes) -> None:
        if self._held is None:
            super()._adapter_emit_data(data)
        else:
            self._held.append(data)


def _header_without_table(data: bytes, error: Exception) -> tuple[int, frame.Header]:
    """The content header frame at the start of ``data``, decoded with an empty field
    table in place of the one that raised ``error``; ``error`` again for any other frame."""
    frame_type, channel, size = struct.unpack_from(">BHL", data)
    payload = data[spec.FRAME_HEADER_SIZE : spec.FRAME_HEADER_SIZE + size]
    if frame_type != spec.FRAME_HEADER:
        raise error
    class_id, _, body_size = struct.unpack_from(">HHQ", payload)
    encoded = payload[12:]
    (flags,) = struct.unpack_from(">H", encoded)
    if class_id != BasicProperties.INDEX or flags & 1 or not flags & BasicProperties.FLAG_HEADERS:
        raise error  # flag bit 0 would continue the flags in another word: Basic has none
    table_at = 2
    for before in (BasicProperties.FLAG_CONTENT_TYPE, BasicProperties.FLAG_CONTENT_ENCODING):
        if flags & before:
            table_at += 1 + encoded[table_at]  # a short string
    (table_size,) = struct.unpack_from(">I", encoded, table_at)
    properties = BasicProperties()
    properties.decode(encoded[:table_at] + bytes(4) + encoded[table_at + 4 + table_size :])
    properties.headers = UndecodableHeaders(f"{type(error).__name__}: {error}")
    end = spec.FRAME_HEADER_SIZE + size + spec.FRAME_END_SIZE
    return end, frame.Header(channel, body_size, properties)


class AmqpSession:
    """A connection with one channel in confirm mode, both used only from the event loop
    that opened them. ``lost`` completes when either closes, for whatever reason; every
    operation after that raises ``BrokerUnavailable``."""

    def __init__(self, connection: _Connection, lost: asyncio.Future[str]) -> None:
        self._connection = connection
        self._channel: Channel | None = None
        self.lost = lost
        self._published = 0
        self._confirms: dict[int, asyncio.Future[None]] = {}
        self._tags_by_message_id: dict[str, int] = {}
        self._unsettled: dict[int, None] = {}
        """Deliveries to this session's consumer not settled yet, oldest first."""
        self._acks: list[int] = []
        """Deliveries acked since the last ``_send_acks``."""
        lost.add_done_callback(lambda _: self._fail_unconfirmed())

    @classmethod
    async def open(cls, parameters: pika.URLParameters) -> AmqpSession:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        lost: asyncio.Future[str] = loop.create_future()

        def on_open_error(_: Any, error: BaseException | str) -> None:
            detail = str(error) or repr(error)  # a refused connection has an empty str()
            _resolve(opened, BrokerUnavailable(f"cannot connect to RabbitMQ: {detail[:300]}"))

        def on_close(_: Any, reason: BaseException) -> None:
            _resolve(opened, BrokerUnavailable(f"connection closed while opening: {reason}"))
            _resolve(lost, f"connection lost: {reason}")

        connection = _Connection(
            parameters,
            on_open_callback=lambda _: _resolve(opened, None),
            on_open_error_callback=on_open_error,
            on_close_callback=on_close,
            custom_ioloop=loop,
        )
        session = cls(connection, lost)
        try:
            await opened
            await session._open_channel()
        except BaseException:
            await session.close()
            raise
        return session

    async def _open_channel(self) -> None:
        channel: Channel = await self._rpc(
            lambda done: self._connection.channel(on_open_callback=done)
        )
        channel.add_on_close_callback(
            lambda _, reason: _resolve(self.lost, f"channel closed: {reason}")
        )
        channel.add_on_return_callback(self._on_return)
        channel.add_on_cancel_callback(
            lambda _: _resolve(self.lost, "the broker cancelled the consumer")
        )
        self._channel = channel
        await self._rpc(lambda done: channel.confirm_delivery(self._on_confirm, callback=done))

    @property
    def is_open(self) -> bool:
        return not self.lost.done()

    @property
    def channel(self) -> Channel:
        if self._channel is None or self.lost.done():
            raise BrokerUnavailable(self._lost_reason())
        return self._channel

    def _lost_reason(self) -> str:
        return self.lost.result() if self.lost.done() else "channel not open yet"

    async def declare_queue(self, name: str, arguments: dict[str, Any]) -> None:
        channel = self.channel
        await self._rpc(
            lambda done: channel.queue_declare(
                name, durable=True, arguments=arguments, callback=done
            )
        )

    async def declare_exchange(self, name: str, exchange_type: str) -> None:
        channel = self.channel
        await self._rpc(
            lambda done: channel.exchange_declare(
                name, exchange_type=exchange_type, durable=True, callback=done
            )
        )

    async def qos(self, prefetch: int) -> None:
        channel = self.channel
        await self._rpc(lambda done: channel.basic_qos(prefetch_count=prefetch, callback=done))

    async def consume(self, queue: str, on_message: MessageCallback) -> str:
        channel = self.channel
        tag: str = ""

        def start(done: Callable[[Any], None]) -> None:
            nonlocal tag
            tag = channel.basic_consume(queue, on_message, callback=done)

        await self._rpc(start)
        return tag

    async def cancel(self, consumer_tag: str) -> None:
        channel = self.channel
        await self._rpc(lambda done: channel.basic_cancel(consumer_tag, callback=done))

    def publish(
        self,
        routing_key: str,
        body: bytes,
        properties: BasicProperties,
        exchange: str = "",
        mandatory: bool = True,
    ) -> asyncio.Future[None]:
        """Publishes without waiting (to the queue ``routing_key`` names, by default); the
        future completes when the broker confirms the message and fails with
        ``BrokerUnavailable`` on a nack, a return (when ``mandatory``) or a lost channel."""
        channel = self.channel
        try:
            with self.sending_together():  # a method, a header and a body frame
                channel.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)
        except AMQPError as exc:
            raise BrokerUnavailable(f"cannot publish: {exc!r}") from exc
        self._published += 1
        confirmed = asyncio.get_running_loop().create_future()
        self._confirms[self._published] = confirmed
        if properties.message_id:
            self._tags_by_message_id[properties.message_id] = self._published
        return confirmed

    def sending_together(self) -> contextlib.AbstractContextManager[None]:
        """What is published or acked inside goes to RabbitMQ in one write at its end."""
        return self._connection.writes_held()

    def delivered(self, delivery_tag: int) -> None:
        """Notes a delivery to this session's consumer: it is unsettled until ``settle``."""
        self._unsettled[delivery_tag] = None

    def settle(self, delivery_tag: int, *, ack: bool = True) -> None:
        """Acks a delivery, or nacks it back onto its queue.

        The acks of one turn of the event loop go out together at its end: one
        ``basic.ack`` with ``multiple`` for those older than every delivery still
        unsettled, one each for the others."""
        channel = self.channel
        self._unsettled.pop(delivery_tag, None)
        if ack:
            self._acks.append(delivery_tag)
            if len(self._acks) == 1:
                asyncio.get_running_loop().call_soon(self._send_acks)
            return
        try:
            channel.basic_nack(delivery_tag, requeue=True)
        except AMQPError as exc:
            raise BrokerUnavailable(f"cannot settle delivery: {exc!r}") from exc

    def _send_acks(self) -> None:
        acks, self._acks = sorted(self._acks), []
        if self._channel is None or self.lost.done():
            return  # the broker delivers them again, as every delivery of a lost channel
        oldest_unsettled = next(iter(self._unsettled), None)
        older = [tag for tag in acks if oldest_unsettled is None or tag < oldest_unsettled]
        try:
            with self.sending_together():
                if older:
                    self._channel.basic_ack(older[-1], multiple=True)
                for tag in acks[len(older) :]:
                    self._channel.basic_ack(tag)
        except AMQPError as exc:
            logger.warning("acks not sent, the messages will be delivered again: %r", exc)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, Basic.Ack)
        tags = [method.delivery_tag]
        if method.multiple:
            tags = [tag for tag in self._confirms if tag <= method.delivery_tag]
        for tag in tags:
            confirmed = self._confirms.pop(tag, None)
            if confirmed is not None:
                _resolve(confirmed, None if acked else BrokerUnavailable("the broker nacked"))
        if not self._confirms:
            self._tags_by_message_id.clear()

    def _on_return(self, _: Channel, method: Any, properties: BasicProperties, __: bytes) -> None:
        # A return precedes the ack of the same message: fail it before the ack arrives.
        tag = self._tags_by_message_id.get(properties.message_id or "")
        confirmed = self._confirms.get(tag) if tag is not None else None
        if confirmed is not None:
            _resolve(confirmed, BrokerUnavailable(f"unroutable: {method.reply_text}"))

    async def _rpc(self, start: Callable[[Callable[[Any], None]], object]) -> Any:
        """Starts a pika operation that reports through a callback, and waits for it
        or for the session to be lost."""
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            start(lambda result: _resolve(answered, result))
        except AMQPError as exc:
            raise BrokerUnavailable(f"RabbitMQ refused: {exc!r}") from exc
        await asyncio.wait({answered, self.lost}, return_when=asyncio.FIRST_COMPLETED)
        if not answered.done():
            answered.cancel()
            raise BrokerUnavailable(self._lost_reason())
        return answered.result()

    def _fail_unconfirmed(self) -> None:
        for confirmed in self._confirms.values():
            _resolve(confirmed, BrokerUnavailable(self._lost_reason()))
        self._confirms.clear()
        self._tags_by_message_id.clear()

    async def close(self) -> None:
        """Closes the connection: the broker requeues every unsettled delivery."""
        _resolve(self.lost, "closed by Taskport")
        self._fail_unconfirmed()
        if self._connection.is_closed:
            return
        closed = asyncio.get_running_loop().create_future()
        self._connection.add_on_close_callback(lambda *_: _resolve(closed, None))
        with contextlib.suppress(AMQPError):
            if not self._connection.is_closing:
                self._connection.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closed, CLOSE_TIMEOUT)


async def all_confirmed(confirmations: Sequence[asyncio.Future[None]]) -> None:
    """Waits for every confirmation; raises ``BrokerUnavailable`` if any failed or they
    take longer than ``CONFIRM_TIMEOUT``."""
    try:
        async with asyncio.timeout(CONFIRM_TIMEOUT):
            results = await asyncio.gather(*confirmations, return_exceptions=True)
    except TimeoutError:
        raise BrokerUnavailable(f"no confirm within {CONFIRM_TIMEOUT:g} seconds") from None
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        raise BrokerUnavailable(
            f"{len(failures)} of {len(results)} messages not confirmed: {failures[0]}"
        )


def _resolve(future: asyncio.Future[Any], outcome: object) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
        future.exception()  # nobody may be waiting: mark the exception as retrieved
    else:
        future.set_result(outcome)
