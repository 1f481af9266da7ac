"""HTTP request and response schemas of the referrals service."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from services.referrals.domain import STATUSES
from services.referrals.events import FamilyAsKnownSchema
from services.referrals.models import (
    DELIVERIES,
    SIGNAL_PRIORITIES,
    SIGNAL_STATUSES,
    URGENCIES,
)
from shared.agencies import AGENCY_KINDS
from shared.http import PageArgs, page_schema


def _text(max_length: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=max_length), **kwargs)


def _code(**kwargs: Any) -> fields.String:
    """Service codes are shared with the registry's measure kinds."""
    return fields.String(validate=validate.Regexp(r"^[a-z0-9_.-]{1,60}$"), **kwargs)


# --- the directory -----------------------------------------------------------------------------


class ContactIn(Schema):
    person_id = _text(120, required=True)
    name = _text(200, required=True)
    role = _text(60, required=True, metadata={"example": "social_pedagogue"})
    email = fields.Email(load_default=None, allow_none=True)
    phone = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^\+?[0-9 ()-]{5,40}$")
    )
    preferences = fields.Dict(
        keys=fields.String(validate=validate.OneOf(("email", "sms", "quiet_hours"))),
        load_default=dict,
        metadata={"example": {"email": True, "sms": False}},
    )
    active = fields.Boolean(load_default=True)


class ContactPut(ContactIn):
    person_id = fields.String(dump_only=True)


class ContactOut(ContactIn):
    pass


class AgencyIn(Schema):
    id = fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$"), load_default=None)
    name = _text(200, required=True)
    kind = fields.String(required=True, validate=validate.OneOf(AGENCY_KINDS))
    districts = fields.List(_text(120), load_default=list)
    services = fields.List(_code(), load_default=list, metadata={"example": ["counselling"]})
    working_hours = fields.Dict(
        keys=fields.String(), load_default=dict, metadata={"example": {"mon-fri": "09:00-17:00"}}
    )
    email = fields.Email(load_default=None, allow_none=True)
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    active = fields.Boolean(load_default=True)
    delivery = fields.String(
        load_default="api",
        validate=validate.OneOf(DELIVERIES),
        metadata={
            "description": "api: its system polls the HTTP API; webhook: we POST to its "
            "webhooks; amqp: its system reads its own queue; link: no system, no account - "
            "its contacts get signed links by email/SMS"
        },
    )
    contacts = fields.List(fields.Nested(ContactIn), load_default=list)


class AgencyPatch(Schema):
    name = _text(200)
    kind = fields.String(validate=validate.OneOf(AGENCY_KINDS))
    districts = fields.List(_text(120))
    services = fields.List(_code())
    working_hours = fields.Dict(keys=fields.String())
    email = fields.Email(allow_none=True)
    phone = fields.String(allow_none=True, validate=validate.Length(max=40))
    active = fields.Boolean()
    delivery = fields.String(validate=validate.OneOf(DELIVERIES))


class AgencyOut(AgencyIn):
    id = fields.String()
    version = fields.Integer()


class AgencyArgs(PageArgs):
    kind = fields.String(validate=validate.OneOf(AGENCY_KINDS))
    district = fields.String()
    service = fields.String()


AgencyPage = page_schema(AgencyOut)


class RuleIn(Schema):
    service_code = _code(required=True)
    district = _text(120, required=True, metadata={"description": "a district, or * for any"})
    agency_id = _text(64, required=True)


class RuleOut(RuleIn):
    id = fields.String()
    created_by = fields.String()


class ApiKeyIn(Schema):
    name = _text(200, required=True, metadata={"example": "school information system"})


class ApiKeyOut(Schema):
    key_id = fields.String()
    name = fields.String()
    agency_id = fields.String()
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(allow_none=True)


class ApiKeyCreated(ApiKeyOut):
    key = fields.String(metadata={"description": "shown this once; store it in a secret store"})


# --- referrals ---------------------------------------------------------------------------------


class PersonRef(Schema):
    class Meta:
        unknown = EXCLUDE

    person_id = _text(120, required=True)
    name = _text(200, load_default=None, allow_none=True)
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    email = fields.Email(load_default=None, allow_none=True)


class ReferralIn(Schema):
    family_id = _text(36, required=True)
    family_number = _text(20, required=True)
    district = _text(120, required=True)
    service_code = _code(required=True)
    agency_id = _text(64, load_default=None, allow_none=True)
    reason = _text(2000, required=True)
    urgency = fields.String(load_default="routine", validate=validate.OneOf(URGENCIES))
    deadline = fields.Date(load_default=None, allow_none=True)
    contact = fields.Nested(PersonRef, required=True)
    measure_id = _text(36, load_default=None, allow_none=True)
    draft = fields.Boolean(load_default=False)
    consent_override_reason = _text(2000, load_default=None, allow_none=True)


class TransitionIn(Schema):
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    reason = _text(2000, load_default=None, allow_none=True)
    outcome = _text(4000, load_default=None, allow_none=True)
    version = fields.Integer(load_default=None, allow_none=True)
    consent_override_reason = _text(2000, load_default=None, allow_none=True)


class AddressIn(Schema):
    agency_id = _text(64, required=True)


class CommentIn(Schema):
    body = _text(4000, required=True)


class CommentOut(Schema):
    id = fields.String()
    author_id = fields.String()
    author_agency_id = fields.String(allow_none=True)
    body = fields.String()
    at = fields.DateTime()


class StatusChangeOut(Schema):
    from_status = fields.String(allow_none=True)
    to_status = fields.String()
    reason = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    at = fields.DateTime()
    by = fields.String()


class ReferralOut(Schema):
    id = fields.String()
    number = fields.String(allow_none=True, metadata={"example": "R-2026-000123"})
    measure_id = fields.String(allow_none=True)
    family_id = fields.String()
    family_number = fields.String()
    district = fields.String()
    agency_id = fields.String(allow_none=True)
    service_code = fields.String()
    reason = fields.String()
    urgency = fields.String()
    deadline = fields.Date(allow_none=True)
    contact = fields.Dict()
    status = fields.String()
    status_reason = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    sender_id = fields.String()
    consent_override = fields.Boolean()
    acknowledge_due_at = fields.DateTime(allow_none=True)
    due_at = fields.DateTime(allow_none=True)
    overdue_kind = fields.String(allow_none=True)
    overdue_level = fields.Integer()
    escalated_at = fields.DateTime(allow_none=True)
    version = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ReferralDetail(ReferralOut):
    history = fields.List(fields.Nested(StatusChangeOut))
    comments = fields.List(fields.Nested(CommentOut))


class ReferralArgs(PageArgs):
    status = fields.String(validate=validate.OneOf(STATUSES))
    agency_id = fields.String()
    family_id = fields.String()
    measure_id = fields.List(
        fields.String(validate=validate.Length(min=1, max=36)),
        validate=validate.Length(max=100),
        metadata={
            "description": "the referrals made from these plan measures (repeat the parameter "
            "for several: a case's plan in one call)"
        },
    )


ReferralPage = page_schema(ReferralOut)


class FeedArgs(Schema):
    since = fields.String(
        load_default=None, metadata={"description": "the next_cursor of the previous answer"}
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class FeedOut(Schema):
    items = fields.List(fields.Nested(ReferralOut))
    next_cursor = fields.String(allow_none=True)


# --- signals -----------------------------------------------------------------------------------


class SignalIn(Schema):
    district = _text(120, required=True)
    observed = _text(4000, required=True, metadata={"example": "пропуски занятий две недели"})
    observed_at = fields.AwareDateTime(required=True)
    priority = fields.String(required=True, validate=validate.OneOf(SIGNAL_PRIORITIES))
    family = fields.Nested(FamilyAsKnownSchema, required=True)


class SignalOut(Schema):
    id = fields.String()
    reporter_id = fields.String()
    reporter_agency_id = fields.String(allow_none=True)
    district = fields.String()
    observed = fields.String()
    observed_at = fields.DateTime()
    family = fields.Dict()
    priority = fields.String()
    status = fields.String()
    triage_due_at = fields.DateTime()
    escalated_at = fields.DateTime(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    decided_by = fields.String(allow_none=True)
    dismiss_reason = fields.String(allow_none=True)
    family_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
    refusal_reason = fields.String(
        allow_none=True,
        metadata={"description": "why the registry refused the last acceptance (then: new)"},
    )
    refusal_detail = fields.String(allow_none=True)
    refused_at = fields.DateTime(allow_none=True)


class SignalArgs(PageArgs):
    status = fields.String(validate=validate.OneOf(SIGNAL_STATUSES))
    district = fields.String()


SignalPage = page_schema(SignalOut)


class AcceptSignalIn(Schema):
    family_id = _text(36, load_default=None, allow_none=True)


class ReasonIn(Schema):
    reason = _text(2000, required=True)
