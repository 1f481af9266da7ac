"""What agency systems send over AMQP: status updates, comments and signals, published to the
ingress exchange and handled from ``P.referrals.agency-ingress`` with the same domain functions
and scope rules as the agency HTTP API (an API key's agency = here the message's ``user_id``).

A message has the properties ``type`` (``referral.status``, ``referral.comment`` or
``signal``), ``message_id`` (the client's id for deduplication) and ``user_id`` (RabbitMQ
refuses a ``user_id`` other than the connection's user, so ``agency-<id>`` proves the agency),
and a JSON object body. A message without ``user_id``, from a user that is not an agency's,
malformed, or refused by the rules (another agency's referral, an illegal step) is dead-lettered
at once with the reason in ``x-opora-dead-reason``; the next message is handled as usual.

The shared consumer base consumes our own event envelopes, so this module adapts it: it
overrides only the step that turns a delivery into an ``Event`` (from the message properties
and the body) and keeps the rest: batches in one transaction with savepoints, the inbox
(keyed by agency and message id, so a redelivery has one effect), the retry queues for
transient failures and the dead-letter queue ``P.referrals.agency-ingress.dlq``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kombu import Connection
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from sqlalchemy.orm import Session, sessionmaker

from services.referrals import agency_channel, directory, domain
from services.referrals import signals as signal_rules
from services.referrals.domain import Actor
from services.referrals.models import Referral, tables
from services.referrals.schemas import SignalIn
from shared.auth import audit
from shared.auth.context import principal_context
from shared.auth.principal import AGENCY_SYSTEM_KIND, Principal
from shared.auth.roles import AGENCY_SYSTEM
from shared.db import transaction, utcnow
from shared.errors import DomainError
from shared.events import Event, MalformedEvent, Unprocessable, decode_json_object
from shared.messaging import broker
from shared.messaging.consumer import Consumer, Handlers
from shared.messaging.topology import Names, is_amqp
from shared.tables import InfrastructureTables
from shared.worker import JobContext

log = logging.getLogger(__name__)

STATUS = "referral.status"
COMMENT = "referral.comment"
SIGNAL = "signal"
MESSAGE_TYPES = (STATUS, COMMENT, SIGNAL)
MAX_MESSAGE_ID = 200
REFERRAL_FIELDS = ["family_id", "family_number", "reason", "contact"]
INBOX_NAMESPACE = uuid.UUID("0e5b7d3a-6c1f-4e29-8b4a-2d9f1c7e3a58")


class _IngressHandlers(Handlers):
    """Handlers keyed by the ingress message types; the queue is bound to the ingress exchange,
    not to domain events, so it has no event routing keys."""

    def routing_keys(self) -> list[str]:
        return []


ingress_handlers = _IngressHandlers(agency_channel.INGRESS_SERVICE)


# --- message schemas (what the AsyncAPI document shows) ----------------------------------------


class StatusMessage(Schema):
    """Move a referral addressed to the sending agency one lifecycle step."""

    class Meta:
        unknown = RAISE

    referral_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    status = fields.String(required=True, validate=validate.OneOf(domain.STATUSES))
    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    outcome = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=4000))
    version = fields.Integer(load_default=None, allow_none=True, strict=True)


class CommentMessage(Schema):
    """A comment on the thread of a referral addressed to the sending agency."""

    class Meta:
        unknown = RAISE

    referral_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    body = fields.String(required=True, validate=validate.Length(min=1, max=4000))


class SignalMessage(SignalIn):
    """A family in trouble, with the fields of ``POST /signals``."""

    class Meta:
        unknown = RAISE


SCHEMAS: dict[str, type[Schema]] = {
    STATUS: StatusMessage,
    COMMENT: CommentMessage,
    SIGNAL: SignalMessage,
}


# --- from a delivery to an Event ---------------------------------------------------------------


def inbox_id(agency_id: str, message_id: str) -> str:
    """Per agency: one agency's ids cannot shadow another's; 36 characters fit the inbox."""
    return str(uuid.uuid5(INBOX_NAMESPACE, f"{agency_id}\n{message_id}"))


def to_event(properties: dict[str, Any], body: Any, now: dt.datetime) -> Event:
    """Read a delivery; raises an EventError (-> dead letter) naming what is wrong."""
    user = properties.get("user_id")
    if not user:
        raise Unprocessable("no user_id: the sender is unknown (set user_id to your user name)")
    agency_id = agency_channel.agency_of_user(str(user))
    if agency_id is None:
        raise Unprocessable(f"user_id {user!r} is not an agency system's user")
    message_type = properties.get("type")
    if message_type not in MESSAGE_TYPES:
        raise MalformedEvent(f"type {message_type!r} is not one of {', '.join(MESSAGE_TYPES)}")
    message_id = properties.get("message_id")
    if not message_id or len(str(message_id)) > MAX_MESSAGE_ID:
        raise MalformedEvent("message_id is required (at most 200 characters), for deduplication")
    body = decode_json_object(body)
    correlation = str(properties.get("correlation_id") or message_id)[:64]
    return Event(
        id=inbox_id(agency_id, str(message_id)),
        type=str(message_type),
        version=1,
        occurred_at=now,
        producer=str(user),
        correlation_id=correlation,
        causation_id=None,
        data={
            "agency_id": agency_id,
            "user": str(user),
            "message_id": str(message_id),
            "body": body,
        },
    )


def _load(message_type: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        result: dict[str, Any] = SCHEMAS[message_type]().load(body)
    except ValidationError as exc:
        names = ", ".join(sorted(str(k) for k in exc.messages_dict))
        raise MalformedEvent(
            f"invalid {message_type}: fields {names}: {exc.messages_dict}"
        ) from exc
    return result


@contextmanager
def _as_agency(session: Session, event: Event) -> Iterator[Actor]:
    """The agency system's principal, as an API key of that agency would give it; a domain
    refusal becomes a dead letter with its reason (no retry changes a rule)."""
    agency_id = event.data["agency_id"]
    principal = Principal(
        subject=f"amqp:{event.data['user']}",
        roles=frozenset({AGENCY_SYSTEM}),
        agency_id=agency_id,
        kind=AGENCY_SYSTEM_KIND,
        name=event.data["user"],
    )
    try:
        with principal_context(principal):
            directory.get_agency(session, agency_id)
            yield Actor.of(principal)
    except DomainError as exc:
        errors = f" {exc.errors}" if exc.errors else ""
        raise Unprocessable(f"refused ({exc.status} {exc.code}): {exc.detail}{errors}") from exc


def _audit(session: Session, referral: Referral, action: str, reason: str | None = None) -> None:
    audit.record(
        session,
        tables,
        action=action,
        entity="referral",
        entity_id=referral.id,
        family_id=referral.family_id,
        fields=REFERRAL_FIELDS,
        reason=reason,
    )


@ingress_handlers.on(STATUS)
def referral_status(session: Session, event: Event) -> None:
    data = _load(STATUS, event.data["body"])
    with _as_agency(session, event) as actor:
        referral = domain.visible_referral(session, actor, data["referral_id"], for_update=True)
        if referral.status == data["status"]:
            log.info("status already reached", extra={"referral_id": referral.id})
            return
        domain.transition(
            session,
            actor,
            referral,
            data["status"],
            utcnow(),
            reason=data["reason"],
            outcome=data["outcome"],
            expected_version=data["version"],
        )
        _audit(session, referral, "update", data["reason"])


@ingress_handlers.on(COMMENT)
def referral_comment(session: Session, event: Event) -> None:
    data = _load(COMMENT, event.data["body"])
    with _as_agency(session, event) as actor:
        referral = domain.visible_referral(session, actor, data["referral_id"], for_update=True)
        domain.add_comment(session, actor, referral, data["body"], utcnow())


@ingress_handlers.on(SIGNAL)
def signal(session: Session, event: Event) -> None:
    data = _load(SIGNAL, event.data["body"])
    with _as_agency(session, event) as actor:
        reported = signal_rules.report(
            session,
            data,
            reporter_id=actor.id,
            reporter_agency_id=actor.agency_id,
            now=utcnow(),
            rules=signal_rules.SignalRules.from_env(ingress_handlers.settings.options),
        )
        audit.record(
            session,
            tables,
            action="create",
            entity="signal",
            entity_id=reported.id,
            family_id=reported.family_id,
            fields=["family", "observed"],
        )


# --- the consumer ------------------------------------------------------------------------------


class IngressConsumer(Consumer):
    """The shared consumer (inbox, batching, retries, dead letters), reading agency systems'
    messages instead of our envelopes."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        tables: InfrastructureTables,
        connect: Callable[[], Connection],
        names: Names,
        **options: Any,
    ) -> None:
        super().__init__(
            agency_channel.INGRESS_SERVICE,
            ingress_handlers,
            sessions,
            tables,
            connect,
            names,
            parse=lambda message: to_event(dict(message.properties), message.body, utcnow()),
            **options,
        )


def ingress_consumer(worker: Any) -> IngressConsumer | None:
    """For the worker (``handlers.consumers``): the agency ingress beside the service's own
    queue; none in the embedded mode, where no agency system can connect."""
    if not worker.settings.broker_url.startswith("amqp"):
        return None
    ingress_handlers.settings = worker.settings
    return IngressConsumer(
        worker.sessions, worker.tables, worker.confirmed_connection, worker.names
    )


# --- worker jobs -------------------------------------------------------------------------------


def _names(ctx: JobContext) -> Names:
    return Names(ctx.settings.broker_prefix)


def declare_agency_queues(ctx: JobContext) -> list[str]:
    """Job (at start, then every minute): the ingress and every amqp agency's inbox exist, so
    the relay's messages for a new agency find its queue. Idempotent."""
    with broker.connect(ctx.settings) as conn:
        conn.ensure_connection(max_retries=3)
        if not is_amqp(conn):
            return []  # the embedded mode has no agency systems to connect
        with transaction(ctx.sessions) as session:
            return agency_channel.declare_all(conn, _names(ctx), session)


def consume_ingress(ctx: JobContext, *, idle_exit: float = 5.0) -> None:
    """Consume the ingress until it has been idle for ``idle_exit`` seconds: for tests and
    tools; the worker runs ``ingress_consumer`` continuously instead."""
    if not ctx.settings.broker_url.startswith("amqp"):
        return
    names = _names(ctx)
    ingress_handlers.settings = ctx.settings
    with broker.connect(ctx.settings) as conn:
        conn.ensure_connection(max_retries=3)
        agency_channel.declare(conn, names)
    IngressConsumer(
        ctx.sessions,
        ctx.tables,
        lambda: broker.connect(ctx.settings, confirm_publish=True),
        names,
        batch_size=100,
        prefetch=200,
    ).run(idle_exit=idle_exit)
