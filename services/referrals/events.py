"""Events the referrals service publishes, with their versioned schemas.

Referral events carry ids and statuses, never the family file; directory events carry the
agency's contacts so that notifications can build its recipients without calling back.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from services.referrals.models import (
    DELIVERIES,
    OVERDUE_KINDS,
    SIGNAL_PRIORITIES,
    URGENCIES,
    tables,
)
from shared.agencies import AgencyKind
from shared.events import event_schema
from shared.messaging.outbox import add_event

REFERRAL_STATUSES = (
    "draft",
    "requested",
    "received",
    "accepted",
    "rejected",
    "in-progress",
    "on-hold",
    "completed",
    "failed",
    "cancelled",
    "entered-in-error",
)


def publish(
    session: Session, name: str, data: dict[str, Any], version: int | None = None
) -> dict[str, Any]:
    return add_event(session, tables, name, data, producer="referrals", version=version)


# --- the directory -----------------------------------------------------------------------------


class ContactSchema(Schema):
    person_id = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    email = fields.String(allow_none=True, load_default=None)
    phone = fields.String(allow_none=True, load_default=None)
    preferences = fields.Dict(required=True)
    active = fields.Boolean(required=True)


class _AgencySnapshot(Schema):
    """The whole agency: consumers keep the newest ``agency_version``."""

    agency_id = fields.String(required=True)
    name = fields.String(required=True)
    kind = AgencyKind(required=True)
    districts = fields.List(fields.String(), required=True)
    services = fields.List(fields.String(), required=True)
    email = fields.String(allow_none=True, load_default=None)
    phone = fields.String(allow_none=True, load_default=None)
    active = fields.Boolean(required=True)
    contacts = fields.List(fields.Nested(ContactSchema), required=True)
    # optional so that messages from before it existed still parse
    delivery = fields.String(load_default="api", validate=validate.OneOf(DELIVERIES))
    agency_version = fields.Integer(required=True)


@event_schema("referrals.agency.created", 1)
class AgencyCreatedV1(_AgencySnapshot):
    """A new agency in the directory."""


@event_schema("referrals.agency.updated", 1)
class AgencyUpdatedV1(_AgencySnapshot):
    """The agency changed (its fields or its contacts): ``changes`` names what."""

    changes = fields.List(fields.String(), required=True)


@event_schema("referrals.contact.changed", 1)
class ContactChangedV1(Schema):
    """One staff member was added, updated or removed; the agency's districts come along so a
    recipients read model needs no second look-up."""

    agency_id = fields.String(required=True)
    agency_kind = AgencyKind(required=True)
    districts = fields.List(fields.String(), required=True)
    change = fields.String(required=True, validate=validate.OneOf(("added", "updated", "removed")))
    contact = fields.Nested(ContactSchema, required=True)
    agency_version = fields.Integer(required=True)


# --- referrals ---------------------------------------------------------------------------------


@event_schema("referrals.referral.status_changed", 1)
class ReferralStatusChangedV1(Schema):
    """Every step of a referral's life (creation included, with ``previous_status`` null).
    The registry moves the plan's measure from it; ``referral_version`` orders the steps."""

    referral_id = fields.String(required=True)
    measure_id = fields.String(required=True, allow_none=True)
    family_id = fields.String(required=True)
    agency_id = fields.String(required=True, allow_none=True)
    service_code = fields.String(required=True)
    urgency = fields.String(required=True, validate=validate.OneOf(URGENCIES))
    status = fields.String(required=True, validate=validate.OneOf(REFERRAL_STATUSES))
    previous_status = fields.String(
        required=True, allow_none=True, validate=validate.OneOf(REFERRAL_STATUSES)
    )
    reason = fields.String(required=True, allow_none=True)
    outcome = fields.String(required=True, allow_none=True)
    at = fields.AwareDateTime(required=True)
    by = fields.String(required=True)
    referral_version = fields.Integer(required=True)
    # optional (older messages lack them): the human number, the complete-by moment and,
    # while the agency has not answered, the acknowledge-by moment (working-day SLA)
    number = fields.String(allow_none=True, load_default=None)
    due_at = fields.AwareDateTime(allow_none=True, load_default=None)
    acknowledge_due_at = fields.AwareDateTime(allow_none=True, load_default=None)


@event_schema("referrals.referral.claimed", 1)
class ReferralClaimedV1(Schema):
    """A staff member of the agency took the referral on."""

    referral_id = fields.String(required=True)
    agency_id = fields.String(required=True)
    owner_id = fields.String(required=True)
    at = fields.AwareDateTime(required=True)
    referral_version = fields.Integer(required=True)


@event_schema("referrals.referral.commented", 1)
class ReferralCommentedV1(Schema):
    """A comment on the thread; the text stays in the service (it may name people)."""

    referral_id = fields.String(required=True)
    comment_id = fields.String(required=True)
    agency_id = fields.String(required=True, allow_none=True)
    sender_id = fields.String(required=True)
    author_id = fields.String(required=True)
    author_agency_id = fields.String(required=True, allow_none=True)
    at = fields.AwareDateTime(required=True)


class _OverdueFacts(Schema):
    referral_id = fields.String(required=True)
    number = fields.String(required=True, allow_none=True)
    family_id = fields.String(required=True)
    agency_id = fields.String(required=True, allow_none=True)
    kind = fields.String(required=True, validate=validate.OneOf(OVERDUE_KINDS))
    due_at = fields.AwareDateTime(required=True)
    days_overdue = fields.Integer(required=True, validate=validate.Range(min=0))


@event_schema("referrals.referral.overdue", 1)
class ReferralOverdueV1(_OverdueFacts):
    """A reminder: the agency has not acknowledged (``kind`` acknowledge: still requested) or
    not completed (``complete``) the referral in time; ``days_overdue`` in working days.
    Published once per referral and kind."""


@event_schema("referrals.referral.escalated", 1)
class ReferralEscalatedV1(_OverdueFacts):
    """Still overdue after the escalation threshold: the district's coordinator steps in.
    Published once per referral and kind."""

    escalated_at = fields.AwareDateTime(required=True)
    district = fields.String(required=True)


# --- signals -----------------------------------------------------------------------------------


class _SignalFacts(Schema):
    signal_id = fields.String(required=True)
    district = fields.String(required=True)
    priority = fields.String(required=True, validate=validate.OneOf(SIGNAL_PRIORITIES))
    reporter_agency_id = fields.String(required=True, allow_none=True)
    triage_due_at = fields.AwareDateTime(required=True)


@event_schema("referrals.signal.received", 1)
class SignalReceivedV1(_SignalFacts):
    """A signal waits for triage (no family details: notifications points to the signal)."""


@event_schema("referrals.signal.urgent", 1)
class SignalUrgentV1(_SignalFacts):
    """A red signal: the district's coordinators are told at once."""


@event_schema("referrals.signal.escalated", 1)
class SignalEscalatedV1(_SignalFacts):
    """Nobody triaged the signal by its deadline."""

    escalated_at = fields.AwareDateTime(required=True)


class FamilyAsKnownSchema(Schema):
    """The family as the reporter knows it; the registry matches it against the data bank."""

    family_id = fields.String(allow_none=True, load_default=None)
    number = fields.String(allow_none=True, load_default=None)
    surname = fields.String(allow_none=True, load_default=None)
    display_name = fields.String(allow_none=True, load_default=None)
    address = fields.String(allow_none=True, load_default=None)
    settlement = fields.String(allow_none=True, load_default=None)
    children = fields.List(fields.Dict(), load_default=list)
    note = fields.String(allow_none=True, load_default=None)


@event_schema("referrals.signal.accepted", 1)
class SignalAcceptedV1(_SignalFacts):
    """A coordinator accepted the signal: the registry opens or attaches a case in
    ``preparatory``, matching ``family`` (or taking ``family_id``) with duplicate detection."""

    family_id = fields.String(required=True, allow_none=True)
    family = fields.Nested(FamilyAsKnownSchema, required=True)
    observed_at = fields.AwareDateTime(required=True)
    accepted_by = fields.String(required=True)
    at = fields.AwareDateTime(required=True)


@event_schema("referrals.signal.dismissed", 1)
class SignalDismissedV1(_SignalFacts):
    """A coordinator dismissed the signal with a reason."""

    reason = fields.String(required=True)
    dismissed_by = fields.String(required=True)
    at = fields.AwareDateTime(required=True)


@event_schema("referrals.signal.returned", 1)
class SignalReturnedV1(_SignalFacts):
    """The registry refused an accepted signal (``reason``: its code): the signal waits for
    triage again."""

    reason = fields.String(required=True)
    at = fields.AwareDateTime(required=True)


def asyncapi_channels(names: Any, json_schema: Any) -> dict[str, Any]:
    """Beyond the event bus: what agency systems receive on their own queue and send to the
    ingress (for ``shared.asyncapi``)."""
    from services.referrals.agency_asyncapi import asyncapi_channels as agency_channels

    return agency_channels(names, json_schema)
