"""How the consumer takes messages from its queue: pika on RabbitMQ, kombu on the embedded file
transport. The Consumer (consumer.py: inbox, batches, retries, dead letters) is the same over
both.

Why pika on RabbitMQ: kombu's py-amqp reads every frame with three ``recv`` calls and builds a
kombu Message per delivery, which at a few thousand events per second was a third of the
consumer's time; pika reads the socket in large chunks and needs about a third of that CPU per
delivery (bench/README.md). pika cannot speak kombu's file transport, so the embedded mode keeps kombu.

Known limit: pika reads a float in another client's headers as its integer part, so a retried
or dead-lettered copy of such a message carries the integer (the body and properties are
untouched).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from kombu import Connection, Message, Producer, Queue

from shared.messaging.broker import pika_parameters
from shared.messaging.topology import is_amqp

# The AMQP message properties, by kombu's names (which pika shares).
PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)


class Delivery:
    """One message taken from the queue, the same whichever client took it."""

    __slots__ = ("body", "headers", "message", "properties", "routing_key", "tag")

    def __init__(
        self,
        body: Any,
        headers: dict[str, Any],
        properties: dict[str, Any],
        routing_key: str | None,
        tag: int,
        message: Message | None = None,
    ) -> None:
        self.body = body
        self.headers = headers
        self.properties = properties  # message_id, type, user_id, content_type, ...
        self.routing_key = routing_key
        self.tag = tag
        self.message = message  # kombu's own message, which the file transport acks


class ConsumerCancelled(Exception):
    """The broker cancelled our consumer (its queue was deleted or moved): consume again."""


class Deliveries(Protocol):
    """An open connection consuming one queue; each delivery goes to the ``receive`` given."""

    def wait(self, timeout: float) -> None:
        """Take what arrives within ``timeout`` seconds (returns early once something has)."""

    def keepalive(self) -> None:
        """Answer heartbeats while a batch is held (the database is down); deliveries that
        arrive meanwhile are taken as usual."""

    def ack(self, batch: list[Delivery]) -> None: ...

    def republish(
        self, delivery: Delivery, exchange: str, routing_key: str, headers: dict[str, Any]
    ) -> None:
        """A persistent copy with other headers, confirmed by the broker (retries, dead letters)."""

    def close(self) -> None: ...


def open_deliveries(
    connection: Connection, queue: Queue, prefetch: int, receive: Callable[[Delivery], None]
) -> Deliveries:
    """Declare ``queue`` and consume it; ``connection`` says where (it is not itself used on
    RabbitMQ)."""
    if is_amqp(connection):
        return PikaDeliveries(connection, queue, prefetch, receive)
    return KombuDeliveries(connection, queue, prefetch, receive)


class PikaDeliveries:
    def __init__(
        self,
        connection: Connection,
        queue: Queue,
        prefetch: int,
        receive: Callable[[Delivery], None],
    ) -> None:
        import pika

        self._receive = receive
        self._cancelled = False
        self._publisher: Any = None
        self._connection = pika.BlockingConnection(pika_parameters(connection))
        try:
            self._channel = self._connection.channel()
            declare(self._channel, queue)
            self._channel.basic_qos(prefetch_count=prefetch)
            self._channel.add_on_cancel_callback(self._on_cancel)
            self._channel.basic_consume(queue.name, self._on_message)
        except BaseException:
            self.close()
            raise

    def _on_message(self, _channel: Any, method: Any, props: Any, body: bytes) -> None:
        properties = {
            name: value for name in PROPERTY_NAMES if (value := getattr(props, name)) is not None
        }
        self._receive(
            Delivery(body, props.headers or {}, properties, method.routing_key, method.delivery_tag)
        )

    def _on_cancel(self, _frame: Any) -> None:
        self._cancelled = True

    def wait(self, timeout: float) -> None:
        self._connection.process_data_events(time_limit=timeout)
        if self._cancelled:
            raise ConsumerCancelled("the broker cancelled the consumer")

    def keepalive(self) -> None:
        self.wait(0)

    def ack(self, batch: list[Delivery]) -> None:
        self._channel.basic_ack(max(d.tag for d in batch), multiple=True)

    def republish(
        self, delivery: Delivery, exchange: str, routing_key: str, headers: dict[str, Any]
    ) -> None:
        import pika

        if self._publisher is None:
            self._publisher = self._connection.channel()
            self._publisher.confirm_delivery()
        props = delivery.properties
        self._publisher.basic_publish(
            exchange,
            routing_key,
            delivery.body,
            pika.BasicProperties(
                headers=_encodable(headers),
                content_type=props.get("content_type") or "application/octet-stream",
                content_encoding=props.get("content_encoding") or "binary",
                delivery_mode=2,
                message_id=props.get("message_id"),
                type=props.get("type"),
            ),
        )

    def close(self) -> None:
        if self._connection.is_open:
            with contextlib.suppress(Exception):
                self._connection.close()


def _encodable(value: Any) -> Any:
    """pika cannot write a float into headers (our ``x-opora-retry-at`` is one): as text."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: _encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    return value


def declare(channel: Any, queue: Queue) -> None:
    """What kombu declares for a Queue, on a pika channel: the queue, its bindings' exchanges
    and the bindings (topology.py stays the one description of the topology)."""
    channel.queue_declare(
        queue.name,
        durable=queue.durable,
        exclusive=queue.exclusive,
        auto_delete=queue.auto_delete,
        arguments=queue.queue_arguments,  # type: ignore[attr-defined]
    )
    for binding in queue.bindings:
        exchange = binding.exchange
        channel.exchange_declare(
            exchange.name,
            exchange.type,
            durable=exchange.durable,
            auto_delete=exchange.auto_delete,
            arguments=exchange.arguments,
        )
        channel.queue_bind(
            queue.name, exchange.name, routing_key=binding.routing_key, arguments=binding.arguments
        )


class KombuDeliveries:
    """The embedded mode's file transport (and kombu's memory transport in tests)."""

    def __init__(
        self,
        connection: Connection,
        queue: Queue,
        prefetch: int,
        receive: Callable[[Delivery], None],
    ) -> None:
        from kombu import Consumer as KombuConsumer

        self._connection = connection
        self._receive = receive
        connection.ensure_connection(max_retries=3)
        self._consumer = KombuConsumer(
            connection.channel(),
            queues=[queue],
            on_message=self._on_message,
            prefetch_count=prefetch,
        )
        self._consumer.consume()
        self._producer = Producer(connection.channel())

    def _on_message(self, message: Message) -> None:
        properties = {name: message.properties.get(name) for name in PROPERTY_NAMES}
        properties.update(
            content_type=message.content_type, content_encoding=message.content_encoding
        )
        self._receive(
            Delivery(
                message.body,
                dict(message.headers or {}),
                {name: value for name, value in properties.items() if value is not None},
                message.delivery_info.get("routing_key"),
                message.delivery_tag,
                message,
            )
        )

    def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            self._connection.drain_events(timeout=timeout)

    def keepalive(self) -> None:
        self._connection.heartbeat_check()

    def ack(self, batch: list[Delivery]) -> None:
        for delivery in batch:
            assert delivery.message is not None
            delivery.message.ack()

    def republish(
        self, delivery: Delivery, exchange: str, routing_key: str, headers: dict[str, Any]
    ) -> None:
        props = delivery.properties
        self._producer.publish(
            delivery.body,
            exchange=exchange,
            routing_key=routing_key,
            headers=headers,
            content_type=props.get("content_type") or "application/octet-stream",
            content_encoding=props.get("content_encoding") or "binary",
            delivery_mode=2,
            message_id=props.get("message_id"),
            type=props.get("type"),
            declare=[],
            retry=False,
        )

    def close(self) -> None:
        self._connection.release()
