"""Events the notifications service publishes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from services.notifications.models import CHANNELS, MESSAGE_STATES, tables
from shared.events import event_schema
from shared.messaging.outbox import add_event, add_events


@event_schema("notifications.message.sent", 1)
class MessageSentV1(Schema):
    """A message left for its provider (SMTP or the SMS provider accepted it)."""

    message_id = fields.String(required=True)
    source_event_id = fields.String(required=True)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    recipient_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(MESSAGE_STATES))


@event_schema("notifications.message.failed", 1)
class MessageFailedV1(Schema):
    """A message could not be delivered (refused, bounced, or retries exhausted); ``reason``
    names the failure, never an address, a phone number or a body."""

    message_id = fields.String(required=True)
    source_event_id = fields.String(required=True)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    recipient_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(("failed", "bounced")))
    reason = fields.String(required=True, validate=validate.Length(max=500))


@event_schema("notifications.link.reissued", 1)
class LinkReissuedV1(Schema):
    """A message was sent again with fresh signed links (``POST /messages/{id}/resend``): the
    service that checks links of ``purpose`` for ``subject`` (referrals: ``referral`` and the
    referral's id) stops opening those issued before ``issued_from``, so the old link in the
    lost or misdirected message no longer acts. Never the link or its token."""

    purpose = fields.String(required=True, validate=validate.Length(min=1, max=60))
    subject = fields.String(required=True, validate=validate.Length(min=1, max=120))
    issued_from = fields.AwareDateTime(required=True)
    message_id = fields.String(required=True)
    resend_of = fields.String(required=True)


def publish(
    session: Session, name: str, data: dict[str, Any], version: int | None = None
) -> dict[str, Any]:
    return add_event(session, tables, name, data, producer="notifications", version=version)


def publish_all(session: Session, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Several events in one INSERT: a delivery run records fifty outcomes at a time."""
    add_events(session, tables, events, producer="notifications")
