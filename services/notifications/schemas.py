"""HTTP schemas of the notifications service."""

from marshmallow import Schema, fields

from shared.http import PageArgs, page_schema


class MessageOut(Schema):
    id = fields.String()
    source_event_id = fields.String()
    source_event_type = fields.String()
    recipient_id = fields.String()
    channel = fields.String()
    subject = fields.String(allow_none=True)
    state = fields.String()
    attempts = fields.Integer()
    created_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)


class MessageArgs(PageArgs):
    source_event_id = fields.String()
    recipient_id = fields.String()


MessagePage = page_schema(MessageOut)
