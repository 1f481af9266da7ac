"""The broker topology, declared in code and idempotent.

With prefix P (``OPORA_BROKER_PREFIX``):
- ``P.events``: durable topic exchange of domain events, routing key = event type;
  unroutable events go to its alternate exchange ``P.unrouted`` (a bounded queue).
- ``P.<service>``: each consuming service's queue (quorum on RabbitMQ, explicit delivery
  limit, dead-lettered to ``P.dlx``), bound to the event types its handlers take.
- ``P.<service>.retry.<n>``: back-off queues whose TTL dead-letters back into ``P.<service>``.
- ``P.<service>.dlq``: dead letters, with the reason in the headers, for ``opora dlq``.
The same names exist on kombu's file transport in the embedded mode, where queue arguments
(TTL, quorum, limits) are ignored and the worker's retry pump does the waiting instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kombu import Connection, Exchange, Queue, binding

RETRY_DELAYS_MS: tuple[int, ...] = (1_000, 5_000, 30_000, 120_000, 600_000)
DELIVERY_LIMIT = 10
UNROUTED_MAX_LENGTH = 10_000


@dataclass(frozen=True)
class Names:
    prefix: str

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def unrouted(self) -> str:
        return f"{self.prefix}.unrouted"

    @property
    def dlx(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def retry(self) -> str:
        return f"{self.prefix}.retry"

    def exchange(self, logical: str) -> str:
        """Outbox rows name exchanges without the prefix; '' is the default exchange."""
        return f"{self.prefix}.{logical}" if logical else ""

    def queue(self, service: str) -> str:
        return f"{self.prefix}.{service}"

    def dlq(self, service: str) -> str:
        return f"{self.prefix}.{service}.dlq"

    def retry_queue(self, service: str, tier: int) -> str:
        return f"{self.prefix}.{service}.retry.{tier}"


def is_amqp(connection: Connection) -> bool:
    return connection.transport.driver_type == "amqp"


def events_exchange(names: Names) -> Exchange:
    return Exchange(
        names.events,
        type="topic",
        durable=True,
        arguments={"alternate-exchange": names.unrouted},
    )


def service_queue(names: Names, service: str, routing_keys: Iterable[str]) -> Queue:
    exchange = events_exchange(names)
    return Queue(
        names.queue(service),
        bindings=[binding(exchange, routing_key=key) for key in sorted(set(routing_keys))],
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": names.dlx,
            "x-dead-letter-routing-key": names.queue(service),
        },
    )


def dead_letter_queue(names: Names, service: str) -> Queue:
    return Queue(
        names.dlq(service),
        exchange=Exchange(names.dlx, type="direct", durable=True),
        routing_key=names.queue(service),
        durable=True,
    )


def retry_queues(names: Names, service: str) -> list[Queue]:
    exchange = Exchange(names.retry, type="direct", durable=True)
    return [
        Queue(
            names.retry_queue(service, tier),
            exchange=exchange,
            routing_key=names.retry_queue(service, tier),
            durable=True,
            queue_arguments={
                "x-message-ttl": delay,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": names.queue(service),
            },
        )
        for tier, delay in enumerate(RETRY_DELAYS_MS, start=1)
    ]


def unrouted_queue(names: Names) -> Queue:
    return Queue(
        names.unrouted,
        exchange=Exchange(names.unrouted, type="fanout", durable=True),
        durable=True,
        queue_arguments={"x-max-length": UNROUTED_MAX_LENGTH, "x-overflow": "drop-head"},
    )


def declare_topology(
    connection: Connection, names: Names, bindings: Mapping[str, Iterable[str]]
) -> None:
    """Declare exchanges and, for each service in ``bindings``, its queues and bindings."""
    channel = connection.channel()
    try:
        unrouted_queue(names)(channel).declare()
        events_exchange(names)(channel).declare()
        for service, keys in bindings.items():
            service_queue(names, service, keys)(channel).declare()
            dead_letter_queue(names, service)(channel).declare()
            for queue in retry_queues(names, service):
                queue(channel).declare()
    finally:
        channel.close()


def system_bindings() -> dict[str, list[str]]:
    """Every service's routing keys, from its handlers: the queues exist before anyone publishes."""
    import importlib

    from shared.config import SERVICES

    result: dict[str, list[str]] = {}
    for service in SERVICES:
        handlers = importlib.import_module(f"services.{service}.handlers").handlers
        result[service] = handlers.routing_keys()
    return result
