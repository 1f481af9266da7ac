"""The agency system's side of the AMQP channel: a small blocking pika client.

An agency system connects with its own RabbitMQ user (``agency-<agency id>``), which may only
read its inbox ``<prefix>.agency.<id>.inbox`` and publish to ``<prefix>.agency.ingress``::

    client = AgencyClient("amqps://broker.example:5671/opora", "school-1", password="...")
    for message in client.iter_messages(inactivity_timeout=30):
        handle(message.body)          # message.body["referral"] (or ["fhir"] for health)
        message.ack()                 # not acked = delivered again after a reconnect
    client.send_status(referral_id, "accepted")

Every send waits for the broker's confirm (it is then stored), carries a fresh ``message_id``
(pass your own to make a retry of the same action a duplicate that Opora ignores) and
``user_id`` = the user name, which RabbitMQ checks and Opora takes as the sender. A lost
connection is re-opened with exponential back-off; unacked deliveries come again, so handle
``message_id``s idempotently on your side too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from shared.backoff import backoff_seconds

log = logging.getLogger(__name__)

USER_PREFIX = "agency-"
RETRYABLE = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionClosed,
    pika.exceptions.StreamLostError,
    pika.exceptions.ChannelWrongStateError,
    ConnectionError,
)


class SendRefused(RuntimeError):
    """The broker did not take a message (no route, or a negative confirm)."""


@dataclass
class InboxMessage:
    """One delivery from the inbox; ``ack`` once handled, ``reject`` to dead-letter it."""

    body: dict[str, Any]
    message_id: str | None
    type: str | None
    redelivered: bool
    _channel: BlockingChannel = field(repr=False)
    _tag: int = field(repr=False)

    def ack(self) -> None:
        self._channel.basic_ack(self._tag)

    def reject(self) -> None:
        """Not requeued: the broker moves it to the inbox's dead-letter queue."""
        self._channel.basic_nack(self._tag, requeue=False)


class AgencyClient:
    def __init__(
        self,
        url: str,
        agency_id: str,
        *,
        password: str | None = None,
        prefix: str = "opora",
        prefetch: int = 20,
        max_backoff: float = 30.0,
        max_attempts: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.agency_id = agency_id
        self.params = pika.URLParameters(url)
        if password is not None:
            self.params.credentials = pika.PlainCredentials(USER_PREFIX + agency_id, password)
        self.user = str(getattr(self.params.credentials, "username", ""))
        self.inbox = f"{prefix}.agency.{agency_id}.inbox"
        self.ingress = f"{prefix}.agency.ingress"
        self.prefetch = prefetch
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._connection: pika.BlockingConnection | None = None
        self._publisher: BlockingChannel | None = None
        self._consumer: BlockingChannel | None = None

    # --- connection ------------------------------------------------------------------------------

    def __enter__(self) -> AgencyClient:
        self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        self._publisher = self._consumer = None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                log.debug("closing the connection failed", exc_info=True)

    def _connect(self) -> pika.BlockingConnection:
        if self._connection is None or not self._connection.is_open:
            self._connection = pika.BlockingConnection(self.params)
            self._publisher = self._consumer = None
        return self._connection

    def _backoff(self, attempt: int, exc: BaseException) -> None:
        if attempt >= self.max_attempts:
            raise exc
        delay = backoff_seconds(attempt, base=0.5, cap=self.max_backoff, jitter=(0.5, 1.0))
        log.warning("broker connection lost (%s); retrying in %.1fs", type(exc).__name__, delay)
        self.close()
        self._sleep(delay)

    def _retrying(self, action: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return action()
            except RETRYABLE as exc:
                attempt += 1
                self._backoff(attempt, exc)

    # --- receiving -------------------------------------------------------------------------------

    def iter_messages(self, inactivity_timeout: float | None = None) -> Iterator[InboxMessage]:
        """Deliveries from the inbox, acked by the caller; ends after ``inactivity_timeout``
        seconds without one (never, when None). Reconnects and resumes after a lost connection."""
        attempt = 0
        while True:
            try:
                channel = self._consuming_channel()
                for method, properties, body in channel.consume(
                    self.inbox, auto_ack=False, inactivity_timeout=inactivity_timeout
                ):
                    attempt = 0
                    if method is None:
                        channel.cancel()
                        return
                    yield self._message(channel, method, properties, body)
                return
            except RETRYABLE as exc:
                attempt += 1
                self._backoff(attempt, exc)

    def receive(
        self,
        callback: Callable[[InboxMessage], None],
        *,
        inactivity_timeout: float | None = None,
        limit: int | None = None,
    ) -> int:
        """Call ``callback`` for each delivery: acked when it returns, rejected (dead-lettered)
        when it raises. Returns how many were handled."""
        handled = 0
        for message in self.iter_messages(inactivity_timeout):
            try:
                callback(message)
            except Exception:
                log.exception("the callback failed; the message goes to the dead-letter queue")
                message.reject()
            else:
                message.ack()
            handled += 1
            if limit is not None and handled >= limit:
                self._stop_consuming()
                break
        return handled

    def _stop_consuming(self) -> None:
        if self._consumer is not None and self._consumer.is_open:
            self._consumer.cancel()  # unacked prefetched deliveries are requeued

    def _consuming_channel(self) -> BlockingChannel:
        if self._consumer is None or not self._consumer.is_open:
            self._consumer = self._connect().channel()
            self._consumer.basic_qos(prefetch_count=self.prefetch)
        return self._consumer

    @staticmethod
    def _message(
        channel: BlockingChannel, method: Any, properties: Any, body: bytes
    ) -> InboxMessage:
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = {"raw": body.decode("utf-8", "replace")}
        return InboxMessage(
            body=decoded if isinstance(decoded, dict) else {"value": decoded},
            message_id=properties.message_id,
            type=properties.type,
            redelivered=bool(method.redelivered),
            _channel=channel,
            _tag=method.delivery_tag,
        )

    # --- sending ---------------------------------------------------------------------------------

    def send_status(
        self,
        referral_id: str,
        status: str,
        reason: str | None = None,
        outcome: str | None = None,
        *,
        version: int | None = None,
        message_id: str | None = None,
    ) -> str:
        """Move a referral (FHIR Task status vocabulary); returns the message id."""
        body: dict[str, Any] = {"referral_id": referral_id, "status": status}
        for name, value in (("reason", reason), ("outcome", outcome), ("version", version)):
            if value is not None:
                body[name] = value
        return self.send("referral.status", body, message_id=message_id)

    def send_comment(self, referral_id: str, body: str, *, message_id: str | None = None) -> str:
        return self.send(
            "referral.comment", {"referral_id": referral_id, "body": body}, message_id=message_id
        )

    def send_signal(
        self,
        *,
        district: str,
        observed: str,
        observed_at: dt.datetime,
        priority: str,
        family: dict[str, Any],
        message_id: str | None = None,
    ) -> str:
        """Report a family in trouble (the fields of ``POST /signals``)."""
        return self.send(
            "signal",
            {
                "district": district,
                "observed": observed,
                "observed_at": observed_at.isoformat(),
                "priority": priority,
                "family": family,
            },
            message_id=message_id,
        )

    def send(
        self, message_type: str, body: dict[str, Any], *, message_id: str | None = None
    ) -> str:
        """Publish one message and wait for the broker's confirm; retried after a reconnect
        with the same ``message_id``, so Opora handles it once."""
        message_id = message_id or str(uuid.uuid4())
        payload = json.dumps(body, ensure_ascii=False).encode()
        properties = pika.BasicProperties(
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            message_id=message_id,
            type=message_type,
            user_id=self.user,
            timestamp=int(time.time()),
            app_id="opora-agency-client",
        )

        def publish() -> None:
            channel = self._publishing_channel()
            try:
                channel.basic_publish(
                    self.ingress,
                    f"{self.agency_id}.{message_type}",
                    payload,
                    properties,
                    mandatory=True,
                )
            except pika.exceptions.UnroutableError as exc:
                raise SendRefused(
                    "no queue took the message (is Opora's ingress declared?)"
                ) from exc
            except pika.exceptions.NackError as exc:
                raise SendRefused("the broker refused the message") from exc

        self._retrying(publish)
        return message_id

    def _publishing_channel(self) -> BlockingChannel:
        if self._publisher is None or not self._publisher.is_open:
            self._publisher = self._connect().channel()
            self._publisher.confirm_delivery()
        return self._publisher
