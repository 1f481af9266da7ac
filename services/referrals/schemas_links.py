"""HTTP schemas of the signed-link answers, the webhooks and the overdue view."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.referrals.links import ACTIONS
from services.referrals.models import OVERDUE_KINDS, WEBHOOK_STATUSES
from services.referrals.webhooks import EVENT_TYPES
from shared.http import PageArgs, page_schema

# --- signed links ------------------------------------------------------------------------------


class LinkArgs(Schema):
    token = fields.String(required=True, validate=validate.Length(min=10, max=500))


class LinkActionIn(Schema):
    action = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    reason = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=2000),
        metadata={"description": "required to reject"},
    )
    outcome = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=4000),
        metadata={"description": "required to complete"},
    )


class LinkReferralOut(Schema):
    id = fields.String()
    number = fields.String(allow_none=True)
    family_number = fields.String()
    service_code = fields.String()
    reason = fields.String()
    urgency = fields.String()
    deadline = fields.Date(allow_none=True)
    contact = fields.Dict()
    status = fields.String()
    acknowledge_due_at = fields.DateTime(allow_none=True)
    due_at = fields.DateTime(allow_none=True)
    actions = fields.List(fields.String(), metadata={"example": ["accept", "reject"]})


class LinkUrlOut(Schema):
    url = fields.String()
    valid_days = fields.Integer()


# --- webhooks ----------------------------------------------------------------------------------


def _url(**kwargs: object) -> fields.Url:
    return fields.Url(
        schemes={"http", "https"},
        require_tld=False,
        validate=validate.Length(max=2000),
        metadata={"example": "https://school.example/opora/webhook"},
        **kwargs,  # type: ignore[arg-type]
    )


def _events(**kwargs: object) -> fields.List:
    return fields.List(
        fields.String(validate=validate.OneOf(EVENT_TYPES)),
        validate=validate.Length(min=1),
        metadata={"example": ["referrals.referral.status_changed"]},
        **kwargs,  # type: ignore[arg-type]
    )


class WebhookIn(Schema):
    url = _url(required=True)
    events = _events(required=True)
    active = fields.Boolean(load_default=True)


class WebhookPatch(Schema):
    url = _url()
    events = _events()
    active = fields.Boolean()


class WebhookOut(Schema):
    id = fields.String()
    agency_id = fields.String()
    url = fields.String()
    events = fields.List(fields.String())
    active = fields.Boolean()
    secret_hint = fields.String(metadata={"description": "the secret's last characters"})
    created_by = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    secret_rotated_at = fields.DateTime(allow_none=True)


class WebhookCreated(WebhookOut):
    secret = fields.String(
        metadata={"description": "shown this once: the receiver verifies signatures with it"}
    )


class AttemptOut(Schema):
    number = fields.Integer()
    at = fields.DateTime()
    status_code = fields.Integer(allow_none=True)
    duration_ms = fields.Integer()
    error = fields.String(allow_none=True)


class DeliveryOut(Schema):
    id = fields.String(metadata={"description": "X-Opora-Delivery: the same on every retry"})
    subscription_id = fields.String()
    event = fields.String()
    referral_id = fields.String(allow_none=True)
    status = fields.String()
    attempts = fields.Integer()
    next_attempt_at = fields.DateTime(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    delivered_at = fields.DateTime(allow_none=True)


class DeliveryDetail(DeliveryOut):
    payload = fields.Dict()
    log = fields.List(fields.Nested(AttemptOut))


class DeliveryArgs(PageArgs):
    status = fields.String(validate=validate.OneOf(WEBHOOK_STATUSES))


DeliveryPage = page_schema(DeliveryOut)


# --- overdue -----------------------------------------------------------------------------------


class OverdueArgs(PageArgs):
    district = fields.String()
    agency_id = fields.String()
    kind = fields.String(validate=validate.OneOf(OVERDUE_KINDS))
    escalated = fields.Boolean(
        metadata={"description": "only those escalated to the coordinator (true) or not (false)"}
    )


class OverdueOut(Schema):
    id = fields.String()
    number = fields.String(allow_none=True)
    family_id = fields.String()
    district = fields.String()
    agency_id = fields.String(allow_none=True)
    service_code = fields.String()
    urgency = fields.String()
    status = fields.String()
    kind = fields.String(metadata={"description": "acknowledge or complete"})
    due_at = fields.DateTime()
    days_overdue = fields.Integer(metadata={"description": "working days"})
    escalated_at = fields.DateTime(allow_none=True)


OverduePage = page_schema(OverdueOut)
