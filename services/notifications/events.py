"""Events the notifications service publishes."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from services.notifications.models import MESSAGE_STATES, tables
from shared.events import event_schema
from shared.messaging.outbox import add_event


@event_schema("notifications.message.sent", 1)
class MessageSentV1(Schema):
    """A message left for its provider (SMTP accepted it)."""

    message_id = fields.String(required=True)
    source_event_id = fields.String(required=True)
    channel = fields.String(required=True, validate=validate.OneOf(("email", "sms")))
    recipient_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(MESSAGE_STATES))


def publish(
    session: Session, name: str, data: dict[str, Any], version: int | None = None
) -> dict[str, Any]:
    return add_event(session, tables, name, data, producer="notifications", version=version)
