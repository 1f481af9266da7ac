"""Referrals out to agency systems over AMQP: each agency with delivery "amqp" has its own inbox
queue; a referral's changes are staged in the outbox (so they leave only if the change commits)
and the relay publishes them to the agency exchange with the agency id as routing key.

Names, with prefix P (``OPORA_BROKER_PREFIX``):
- ``P.agency``: durable direct exchange, routing key = agency id; what no queue takes goes to
  ``P.unrouted`` (an agency whose queue is not declared yet loses nothing silently).
- ``P.agency.<id>.inbox``: the agency's quorum queue, dead-lettered like every service queue
  to ``P.dlx`` -> ``P.agency.<id>.inbox.dlq`` (what the agency's client rejects lands there).
- ``P.agency.ingress``: durable topic exchange the agencies publish to, routing key
  ``<agency id>.<message type>``; bound with ``#`` to ``P.referrals.agency-ingress`` (see
  ``agency_ingress.py``).

The body is JSON: ``{id, type, occurred_at, producer, agency_id, format, referral}`` where
``referral`` is what the agency HTTP API answers for the referral; a health agency gets
``format: "fhir-r4"`` and ``fhir``: a Bundle with the ServiceRequest and the Task instead.
The queue declarations never happen in a request: the worker declares them (``declare`` at start
and every minute, and on the directory's agency events).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from kombu import Connection, Exchange, Queue, binding
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.referrals import fhir
from services.referrals.models import Agency, Referral, tables
from services.referrals.schemas import ReferralDetail
from shared.logging import current_correlation_id
from shared.messaging.outbox import stage_message
from shared.messaging.topology import DELIVERY_LIMIT, Names, dead_letter_queue, retry_queues

log = logging.getLogger(__name__)

AGENCY_EXCHANGE = "agency"  # logical, as outbox rows name exchanges
INGRESS_EXCHANGE = "agency.ingress"
INGRESS_SERVICE = "referrals.agency-ingress"  # the ingress queue is P.referrals.agency-ingress
FORMAT_OPORA = "opora-referral/1"
FORMAT_FHIR = "fhir-r4"
FORMAT_HEADER = "x-opora-format"
AGENCY_HEADER = "x-opora-agency"
USER_PREFIX = "agency-"
# uuid5 namespace of the messages' stable ids (any fixed UUID; changing it re-sends nothing).
MESSAGE_NAMESPACE = uuid.UUID("6f1c1b5e-3f2d-4f7a-9d1e-5a0b8c2e4d10")
HEALTH_KIND = "health"


# --- names -------------------------------------------------------------------------------------


def inbox_key(agency_id: str) -> str:
    """The agency's queue in ``Names.queue`` terms, so ``opora dlq`` tools work on it too."""
    return f"agency.{agency_id}.inbox"


def inbox_name(names: Names, agency_id: str) -> str:
    return names.queue(inbox_key(agency_id))


def user_name(agency_id: str) -> str:
    """The RabbitMQ user of an agency system; ``user_id`` on its messages proves the sender."""
    return f"{USER_PREFIX}{agency_id}"


def agency_of_user(user: str | None) -> str | None:
    if not user or not user.startswith(USER_PREFIX) or len(user) == len(USER_PREFIX):
        return None
    return user[len(USER_PREFIX) :]


def agency_exchange(names: Names) -> Exchange:
    return Exchange(
        names.exchange(AGENCY_EXCHANGE),
        type="direct",
        durable=True,
        arguments={"alternate-exchange": names.unrouted},
    )


def ingress_exchange(names: Names) -> Exchange:
    return Exchange(names.exchange(INGRESS_EXCHANGE), type="topic", durable=True)


def _quorum_arguments(names: Names, key: str) -> dict[str, Any]:
    """The same arguments as every service queue (topology.service_queue)."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": names.dlx,
        "x-dead-letter-routing-key": names.queue(key),
    }


def inbox_queue(names: Names, agency_id: str) -> Queue:
    return Queue(
        inbox_name(names, agency_id),
        exchange=agency_exchange(names),
        routing_key=agency_id,
        durable=True,
        queue_arguments=_quorum_arguments(names, inbox_key(agency_id)),
    )


def ingress_queue(names: Names) -> Queue:
    """Bound to the ingress exchange by ``#``: the sender is its ``user_id``, not the key."""
    return Queue(
        names.queue(INGRESS_SERVICE),
        bindings=[binding(ingress_exchange(names), routing_key="#")],
        durable=True,
        queue_arguments=_quorum_arguments(names, INGRESS_SERVICE),
    )


# --- declarations (worker side, never in a request) --------------------------------------------


def declare(connection: Connection, names: Names, agency_ids: Iterable[str] = ()) -> None:
    """Idempotently declare the agency and ingress exchanges, the ingress queue with its
    dead-letter and retry queues, and the inbox (with its dead-letter queue) of each agency."""
    channel = connection.channel()
    try:
        agency_exchange(names)(channel).declare()
        ingress_exchange(names)(channel).declare()
        ingress_queue(names)(channel).declare()
        dead_letter_queue(names, INGRESS_SERVICE)(channel).declare()
        for queue in retry_queues(names, INGRESS_SERVICE):
            queue(channel).declare()
        for agency_id in sorted(set(agency_ids)):
            inbox_queue(names, agency_id)(channel).declare()
            dead_letter_queue(names, inbox_key(agency_id))(channel).declare()
    finally:
        channel.close()


def amqp_agency_ids(session: Session) -> list[str]:
    """Every agency that takes its referrals over AMQP (active or not: a deactivated agency's
    queue still holds what it has not read)."""
    return list(session.scalars(select(Agency.id).where(Agency.delivery == "amqp")))


def declare_all(connection: Connection, names: Names, session: Session) -> list[str]:
    """At worker start and on a schedule: the queues of all amqp agencies."""
    ids = amqp_agency_ids(session)
    declare(connection, names, ids)
    return ids


def delete_agency_queues(connection: Connection, names: Names, agency_id: str) -> None:
    """For an operator or a test: remove an agency's inbox and its dead letters."""
    channel = connection.channel()
    try:
        channel.queue_delete(inbox_name(names, agency_id))
        channel.queue_delete(names.dlq(inbox_key(agency_id)))
    finally:
        channel.close()


# --- staging (inside the business transaction) -------------------------------------------------


def message_id(agency_id: str, referral: Referral, event_name: str, data: dict[str, Any]) -> str:
    """The same change staged twice has the same id: the outbox keeps one, the agency dedups."""
    key = json.dumps(
        [agency_id, referral.id, referral.version, event_name, data],
        sort_keys=True,
        default=str,
        ensure_ascii=False,
    )
    return str(uuid.uuid5(MESSAGE_NAMESPACE, key))


def referral_view(referral: Referral) -> dict[str, Any]:
    """The referral exactly as the agency HTTP API shows it (``GET /referrals/<id>``)."""
    result: dict[str, Any] = ReferralDetail().dump(referral)
    return result


def build_message(
    agency: Agency,
    referral: Referral,
    event_name: str,
    data: dict[str, Any],
    *,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body and headers of one inbox message."""
    now = now or dt.datetime.now(dt.UTC)
    body: dict[str, Any] = {
        "id": message_id(agency.id, referral, event_name, data),
        "type": event_name,
        "occurred_at": now.isoformat(),
        "producer": "referrals",
        "correlation_id": current_correlation_id(),
        "agency_id": agency.id,
        "event": data,
    }
    if agency.kind == HEALTH_KIND:
        body["format"] = FORMAT_FHIR
        body["fhir"] = fhir.bundle(referral)
    else:
        body["format"] = FORMAT_OPORA
        body["referral"] = referral_view(referral)
    headers = {FORMAT_HEADER: body["format"], AGENCY_HEADER: agency.id}
    return body, headers


def stage_for_agency(
    session: Session, agency: Agency, referral: Referral, event_name: str, data: dict[str, Any]
) -> str | None:
    """Stage the referral's change for the agency's inbox; returns the message id, or None when
    the agency may not see the referral (a draft, or addressed elsewhere).

    Called by ``outbound.dispatch`` for agencies with delivery "amqp", in the transaction of the
    change: the relay publishes the row once it commits.
    """
    if referral.agency_id != agency.id or referral.status == "draft":
        return None
    session.flush()  # the history and comments the view shows, and the version it is keyed on
    body, headers = build_message(agency, referral, event_name, data)
    outbox = tables.outbox
    if session.scalar(select(outbox.c.id).where(outbox.c.event_id == body["id"])) is not None:
        return str(body["id"])  # staged already in this or an earlier transaction
    stage_message(
        session, tables, body, exchange=AGENCY_EXCHANGE, routing_key=agency.id, headers=headers
    )
    return str(body["id"])
