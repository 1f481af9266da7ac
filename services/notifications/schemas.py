"""HTTP schemas of the notifications service (messages, preferences, receipts, rules)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from services.notifications.models import CHANNELS, MESSAGE_STATES, PRIORITIES
from services.notifications.preferences import LANGUAGES, parse_hhmm, valid_timezone
from shared.http import PageArgs, page_schema


class HistoryOut(Schema):
    at = fields.DateTime()
    from_state = fields.String(allow_none=True)
    to_state = fields.String()
    provider = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)


class MessageOut(Schema):
    id = fields.String()
    source_event_id = fields.String()
    source_event_type = fields.String()
    recipient_id = fields.String()
    family_id = fields.String(allow_none=True, metadata={"description": "the family it concerns"})
    channel = fields.String()
    priority = fields.String()
    template_key = fields.String(allow_none=True)
    template_version = fields.Integer(allow_none=True)
    language = fields.String(allow_none=True)
    subject = fields.String(allow_none=True)
    state = fields.String()
    hold_reason = fields.String(allow_none=True)
    held_until = fields.DateTime(allow_none=True)
    attempts = fields.Integer()
    next_attempt_at = fields.DateTime()
    provider = fields.String(allow_none=True)
    provider_message_id = fields.String(allow_none=True)
    segments = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    resend_of = fields.String(allow_none=True)
    digest_id = fields.String(allow_none=True)
    body_purged = fields.Boolean()
    created_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)


class MessageDetailOut(MessageOut):
    """A message's status, its bodies (until purged) and every state it went through."""

    text = fields.String(allow_none=True)
    html = fields.String(allow_none=True)
    attachments = fields.List(fields.String(), metadata={"description": "attachment file names"})
    history = fields.List(fields.Nested(HistoryOut))


class MessageArgs(PageArgs):
    source_event_id = fields.String(validate=validate.Length(max=120))
    recipient_id = fields.String(validate=validate.Length(max=64))
    family_id = fields.String(validate=validate.Length(min=1, max=64))
    state = fields.String(validate=validate.OneOf(MESSAGE_STATES))
    channel = fields.String(validate=validate.OneOf(CHANNELS))


MessagePage = page_schema(MessageOut)


class ResendIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=3, max=500))
    address = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=254),
        metadata={"description": "another address or phone; default: the original's"},
    )


def _hhmm(value: str) -> None:
    try:
        parse_hhmm(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class QuietHours(Schema):
    start = fields.String(required=True, validate=_hhmm, metadata={"example": "21:00"})
    end = fields.String(required=True, validate=_hhmm, metadata={"example": "08:00"})


class PreferencesIn(Schema):
    """Every field optional: what is left out stays as it is."""

    email = fields.Boolean()
    sms = fields.Boolean()
    language = fields.String(validate=validate.OneOf(LANGUAGES))
    timezone = fields.String(metadata={"example": "Europe/Moscow"})
    quiet_hours = fields.Nested(QuietHours, allow_none=True, metadata={"description": "null: none"})
    only_urgent = fields.Boolean(metadata={"description": "opt out of non-urgent messages"})
    digest = fields.Boolean(metadata={"description": "a daily digest instead of single emails"})
    digest_hour = fields.String(validate=_hhmm, metadata={"example": "08:00"})

    @validates("timezone")
    def _timezone(self, value: str, **_: Any) -> None:
        if not valid_timezone(value):
            raise ValidationError("not an IANA time zone, e.g. Europe/Moscow")

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("give at least one preference")


class PreferencesOut(Schema):
    person_id = fields.String()
    email = fields.Boolean()
    sms = fields.Boolean()
    language = fields.String()
    timezone = fields.String()
    quiet_hours = fields.Nested(QuietHours, allow_none=True)
    only_urgent = fields.Boolean()
    digest = fields.Boolean()
    digest_hour = fields.String()
    source = fields.String(metadata={"description": "directory, self, or default"})


class ReceiptTokenArgs(Schema):
    token = fields.String(required=True, validate=validate.Length(min=10, max=500))


class ReceiptOut(Schema):
    matched = fields.Boolean()
    message_id = fields.String(allow_none=True)
    state = fields.String(allow_none=True)


class BounceOut(Schema):
    matched = fields.Boolean(
        metadata={"description": "the DSN names one of our emails and its address"}
    )
    message_id = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    action = fields.String(allow_none=True, metadata={"description": "the DSN's Action for it"})


class ReceiptUrlOut(Schema):
    url = fields.String()


class RuleOut(Schema):
    name = fields.String()
    event_type = fields.String()
    template = fields.String()
    channels = fields.List(fields.String())
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    audience = fields.String()


class RulesOut(Schema):
    rules = fields.List(fields.Nested(RuleOut))
