"""The consumer base: every service's worker handles its queue through this one class.

A batch of deliveries is handled in one database transaction: the inbox rows of its
message ids are claimed, the handlers run (each in a savepoint only after one of them
failed), effects and inbox rows commit together, and only then are the deliveries
acked (one ``multiple`` ack). A redelivered message finds its id in the inbox and has
no second effect. A message that no retry can
fix (malformed, unknown type or version) is dead-lettered with the reason at once;
a handler failure goes through the back-off queues, then to the dead-letter queue.
While the database is down the batch is held and retried, not burned.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kombu import Connection, Producer
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.events import EVENTS, Event, EventError, EventRegistry, UnknownEvent, parse_envelope
from shared.faults import failpoint
from shared.logging import correlated
from shared.messaging.deliveries import ConsumerCancelled, Deliveries, Delivery, open_deliveries
from shared.messaging.inbox import Inbox
from shared.messaging.topology import RETRY_DELAYS_MS, Names, retry_queues, service_queue
from shared.tables import InfrastructureTables

log = logging.getLogger(__name__)

HandlerFn = Callable[[Session, Event], None]
BatchHandlerFn = Callable[[Session, list[Event]], None]

ATTEMPT = "x-opora-attempt"
RETRY_AT = "x-opora-retry-at"
LAST_ERROR = "x-opora-last-error"
DEAD_REASON = "x-opora-dead-reason"
DEAD_AT = "x-opora-dead-at"
DEAD_SERVICE = "x-opora-service"
ORIGINAL_ROUTING_KEY = "x-opora-original-routing-key"

MAX_ATTEMPTS = len(RETRY_DELAYS_MS) + 1


class Handlers:
    """The event handlers of one service; the queue's bindings are derived from them."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.settings: Any = None  # bound by the worker, for handlers that need a setting
        self._handlers: dict[tuple[str, int], HandlerFn] = {}
        self._batch_handlers: dict[HandlerFn, BatchHandlerFn] = {}

    def on(
        self, event_type: str, versions: Iterable[int] = (1,)
    ) -> Callable[[HandlerFn], HandlerFn]:
        def register(fn: HandlerFn) -> HandlerFn:
            for version in versions:
                self._handlers[(event_type, version)] = fn
            return fn

        return register

    def on_batch(
        self, event_type: str, versions: Iterable[int] = (1,)
    ) -> Callable[[BatchHandlerFn], BatchHandlerFn]:
        """A handler that takes all the batch's events of this type at once (e.g. one upsert)."""

        def register(fn: BatchHandlerFn) -> BatchHandlerFn:
            def one(session: Session, event: Event) -> None:
                fn(session, [event])

            self._batch_handlers[one] = fn
            self.on(event_type, versions)(one)
            return fn

        return register

    def batch_of(self, handler: HandlerFn) -> BatchHandlerFn | None:
        return self._batch_handlers.get(handler)

    def routing_keys(self) -> list[str]:
        return sorted({name for name, _ in self._handlers})

    def handled(self) -> list[tuple[str, int]]:
        return sorted(self._handlers)

    def find(self, event: Event) -> HandlerFn:
        try:
            return self._handlers[(event.type, event.version)]
        except KeyError:
            versions = sorted(v for (n, v) in self._handlers if n == event.type)
            raise UnknownEvent(
                f"{self.service} has no handler for {event.type} v{event.version}"
                + (f"; it handles versions {versions}" if versions else "")
            ) from None


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _connection_lost(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class Consumer:
    def __init__(
        self,
        service: str,
        handlers: Handlers,
        sessions: sessionmaker[Session],
        tables: InfrastructureTables,
        connect: Callable[[], Connection],
        names: Names,
        *,
        batch_size: int = 100,
        prefetch: int = 200,
        flush_interval: float = 0.05,
        registry: EventRegistry = EVENTS,
        parse: Callable[[Delivery], Event] | None = None,
    ) -> None:
        """``parse`` turns a delivery into an Event (default: our envelope); a consumer of
        foreign messages (an agency's ingress) passes its own and keeps the inbox, batching,
        retries and dead-lettering of this class. ``connect`` says which broker: RabbitMQ is
        read through pika, the embedded file transport through kombu (see deliveries.py)."""
        self.service = service
        self.handlers = handlers
        self.sessions = sessions
        self.tables = tables
        self.connect = connect
        self.names = names
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.flush_interval = flush_interval
        self.registry = registry
        self.parse = parse or self._parse_envelope
        self._inbox = Inbox(tables)
        self._pending: list[Delivery] = []
        self._stop = threading.Event()

    # --- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, *, idle_exit: float | None = None) -> None:
        """Consume until ``stop`` is set (or, for tests and tools, after ``idle_exit`` idle seconds)."""
        self._stop = stop or threading.Event()
        backoff = 0.5
        queue = service_queue(self.names, self.service, self.handlers.routing_keys())
        while not self._stop.is_set():
            try:
                deliveries = open_deliveries(self.connect(), queue, self.prefetch, self._receive)
                try:
                    backoff = 0.5
                    if self._consume(deliveries, idle_exit):
                        return
                finally:
                    deliveries.close()
            except conn_errors() as exc:
                log.warning("broker connection lost; reconnecting", extra={"error": _reason(exc)})
                self._pending.clear()  # unacked: the broker redelivers them
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _consume(self, deliveries: Deliveries, idle_exit: float | None) -> bool:
        idle_since = time.monotonic()
        while not self._stop.is_set():
            self._collect(deliveries)
            if self._pending:
                batch, self._pending = self._pending, []
                self._process(batch, deliveries)
                idle_since = time.monotonic()
            else:
                deliveries.keepalive()
                if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    return True
        return True

    def _parse_envelope(self, delivery: Delivery) -> Event:
        return parse_envelope(delivery.body, self.registry)

    def _receive(self, delivery: Delivery) -> None:
        # Not ``self._pending.append``: that bound method would keep the list swapped out below.
        self._pending.append(delivery)

    def _collect(self, deliveries: Deliveries) -> None:
        deadline = time.monotonic() + self.flush_interval
        while len(self._pending) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            deliveries.wait(remaining)

    # --- one batch ------------------------------------------------------------------------------

    def _process(self, batch: list[Delivery], deliveries: Deliveries) -> None:
        parsed: list[tuple[Delivery, Event, HandlerFn]] = []
        dead: list[tuple[Delivery, str]] = []
        for delivery in batch:
            try:
                event = self.parse(delivery)
                parsed.append((delivery, event, self.handlers.find(event)))
            except EventError as exc:
                dead.append((delivery, str(exc)))
        failed, unprocessable = (
            self._commit_with_retries(parsed, deliveries) if parsed else ([], [])
        )
        dead += unprocessable
        for delivery, reason in failed:
            self._retry_or_dead_letter(deliveries, delivery, reason)
        for delivery, reason in dead:
            self._dead_letter(deliveries, delivery, reason)
        deliveries.ack(batch)

    def _commit_with_retries(
        self, parsed: list[tuple[Delivery, Event, HandlerFn]], deliveries: Deliveries
    ) -> tuple[list[tuple[Delivery, str]], list[tuple[Delivery, str]]]:
        """Handle the batch in one transaction; on a handler failure, redo it message by message.

        Returns the messages to retry and those to dead-letter at once, each with the reason.
        """
        careful = False
        races = 0
        backoff = 0.2
        while True:
            try:
                return self._handle_batch(parsed, careful=careful)
            except _HandlerFailed:
                careful = True
            except IntegrityError:
                if not careful:
                    careful = True  # an effect's conflict surfaced at flush: find whose
                    continue
                races += 1
                if races > 3:
                    raise
                # Another consumer committed one of these ids first: the inbox now says so.
                log.info("inbox race; handling the batch again")
            except DBAPIError as exc:
                if not _connection_lost(exc):
                    raise
                log.warning(
                    "database unavailable; holding the batch", extra={"error": type(exc).__name__}
                )
                if self._stop.wait(backoff):
                    raise ConsumerStopped from exc
                backoff = min(backoff * 2, 10.0)
                deliveries.keepalive()

    def _handle_batch(
        self, parsed: list[tuple[Delivery, Event, HandlerFn]], *, careful: bool
    ) -> tuple[list[tuple[Delivery, str]], list[tuple[Delivery, str]]]:
        """One transaction: effects and inbox rows commit together.

        The fast path runs every handler in the batch's transaction; the careful path gives each
        a savepoint so one failing message does not undo the others.
        """
        failed: list[tuple[Delivery, str]] = []
        dead: list[tuple[Delivery, str]] = []
        with self.sessions() as session, session.begin():
            # The inbox rows go first: a message id already there was handled before.
            fresh = set() if careful else self._inbox.claim(session, [e for _, e, _ in parsed])
            batched: dict[BatchHandlerFn, list[Event]] = {}
            for message, event, handler in parsed:
                try:
                    if careful:
                        with correlated(event.correlation_id, event.id), session.begin_nested():
                            first = bool(self._inbox.claim(session, [event]))
                            if first:
                                handler(session, event)
                    elif first := event.id in fresh:
                        fresh.discard(event.id)  # a second copy in this batch is a duplicate
                        batch_handler = self.handlers.batch_of(handler)
                        if batch_handler is not None:
                            batched.setdefault(batch_handler, []).append(event)
                        else:
                            with correlated(event.correlation_id, event.id):
                                handler(session, event)
                except DBAPIError as exc:
                    if _connection_lost(exc):
                        raise
                    if not careful:
                        raise _HandlerFailed from exc
                    failed.append((message, _reason(exc)))
                    continue
                except EventError as exc:
                    if not careful:
                        raise _HandlerFailed from exc
                    dead.append((message, f"{self.service} cannot process it: {exc}"))
                    continue
                except Exception as exc:
                    if not careful:
                        raise _HandlerFailed from exc
                    log.warning(
                        "handler failed",
                        extra={
                            "event_id": event.id,
                            "event_type": event.type,
                            "error": type(exc).__name__,
                        },
                    )
                    failed.append((message, _reason(exc)))
                    continue
                if not first:
                    log.info(
                        "duplicate delivery ignored",
                        extra={"event_id": event.id, "event_type": event.type},
                    )
            try:
                for batch_handler, events in batched.items():
                    batch_handler(session, events)
            except DBAPIError as exc:
                if _connection_lost(exc):
                    raise
                raise _HandlerFailed from exc
            except Exception as exc:
                raise _HandlerFailed from exc
            failpoint("consumer.before_commit")
        failpoint("consumer.after_commit")
        return failed, dead

    # --- retries and dead letters ---------------------------------------------------------------

    def _retry_or_dead_letter(
        self, deliveries: Deliveries, delivery: Delivery, reason: str
    ) -> None:
        headers = dict(delivery.headers)
        attempt = int(headers.get(ATTEMPT, 1))
        if attempt >= MAX_ATTEMPTS:
            self._dead_letter(deliveries, delivery, f"gave up after {attempt} attempts: {reason}")
            return
        delay_ms = RETRY_DELAYS_MS[attempt - 1]
        headers.update(
            {
                ATTEMPT: attempt + 1,
                LAST_ERROR: reason,
                RETRY_AT: time.time() + delay_ms / 1000,
                ORIGINAL_ROUTING_KEY: headers.get(ORIGINAL_ROUTING_KEY) or delivery.routing_key,
            }
        )
        route = self.names.retry_queue(self.service, attempt)
        deliveries.republish(delivery, self.names.retry, route, headers)

    def _dead_letter(self, deliveries: Deliveries, delivery: Delivery, reason: str) -> None:
        headers = dict(delivery.headers)
        headers.update(
            {
                DEAD_REASON: reason,
                DEAD_AT: dt.datetime.now(dt.UTC).isoformat(),
                DEAD_SERVICE: self.service,
                ORIGINAL_ROUTING_KEY: headers.get(ORIGINAL_ROUTING_KEY) or delivery.routing_key,
            }
        )
        log.warning(
            "message dead-lettered",
            extra={"message_id": delivery.properties.get("message_id"), "reason": reason[:200]},
        )
        deliveries.republish(delivery, self.names.dlx, self.names.queue(self.service), headers)


class _HandlerFailed(Exception):
    """A handler raised on the fast path: the batch is rolled back and redone carefully."""


class ConsumerStopped(Exception):
    """Asked to stop while the database was down: deliveries stay unacked and come back."""


def conn_errors() -> tuple[type[BaseException], ...]:
    import amqp
    import kombu.exceptions
    import pika.exceptions

    return (
        OSError,
        amqp.exceptions.ConnectionError,
        amqp.exceptions.ChannelError,
        kombu.exceptions.OperationalError,
        pika.exceptions.AMQPError,
        ConsumerCancelled,
        ConsumerStopped,
    )


class RetryPump:
    """The embedded transport ignores message TTLs: move due retries back to the main queue."""

    def __init__(self, service: str, connect: Callable[[], Connection], names: Names) -> None:
        self.service = service
        self.connect = connect
        self.names = names

    def run_once(self, conn: Connection) -> int:
        moved = 0
        channel = conn.channel()
        producer = Producer(channel)
        try:
            for queue in retry_queues(self.names, self.service):
                bound = queue(channel)
                while (message := bound.get(no_ack=False)) is not None:
                    if float((message.headers or {}).get(RETRY_AT, 0)) > time.time():
                        message.requeue()
                        break
                    producer.publish(
                        message.body,
                        exchange="",
                        routing_key=self.names.queue(self.service),
                        headers=dict(message.headers or {}),
                        content_type=message.content_type,
                        content_encoding=message.content_encoding,
                        message_id=message.properties.get("message_id"),
                        declare=[],
                    )
                    message.ack()
                    moved += 1
        finally:
            channel.close()
        return moved

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                with self.connect() as conn:
                    while not stop.wait(interval):
                        self.run_once(conn)
            except Exception:
                log.exception("retry pump failed; restarting")
                stop.wait(1.0)
