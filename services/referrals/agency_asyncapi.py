"""The agency channels of the AsyncAPI document (services/referrals/events.py hands them to
the generator): what an agency's inbox receives and what it may send to the ingress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields, validate

from services.referrals import agency_channel
from services.referrals.agency_ingress import MESSAGE_TYPES, SCHEMAS
from services.referrals.schemas import ReferralDetail
from shared.messaging.topology import Names


class InboxMessageSchema(Schema):
    """What an agency's inbox receives: a referral change, in Opora's form or (health) FHIR."""

    id = fields.String(required=True, metadata={"description": "= message_id; stable per change"})
    type = fields.String(required=True, metadata={"example": "referrals.referral.status_changed"})
    occurred_at = fields.AwareDateTime(required=True)
    producer = fields.String(required=True, metadata={"example": "referrals"})
    correlation_id = fields.String(allow_none=True)
    agency_id = fields.String(required=True)
    format = fields.String(
        required=True,
        validate=validate.OneOf((agency_channel.FORMAT_OPORA, agency_channel.FORMAT_FHIR)),
    )
    event = fields.Dict(required=True, metadata={"description": "the domain event's data"})
    referral = fields.Nested(
        ReferralDetail,
        metadata={"description": "format opora-referral/1: as GET /referrals/{id} answers"},
    )
    fhir = fields.Dict(
        metadata={"description": "format fhir-r4: a Bundle (collection) of ServiceRequest + Task"}
    )


def asyncapi_channels(
    names: Names, json_schema: Callable[[type[Schema]], dict[str, Any]]
) -> dict[str, Any]:
    """The agency channels for the AsyncAPI 2.6 document, keyed by channel name; the generator
    passes its marshmallow converter as ``json_schema``."""
    ingress = names.exchange(agency_channel.INGRESS_EXCHANGE)
    inbox = names.queue(agency_channel.inbox_key("{agency_id}"))
    headers = {
        "type": "object",
        "required": ["user_id", "message_id", "type"],
        "properties": {
            "user_id": {"type": "string", "description": "agency-<agency id>, checked by RabbitMQ"},
            "message_id": {"type": "string", "description": "the sender's id for deduplication"},
            "type": {"type": "string", "enum": list(MESSAGE_TYPES)},
        },
    }
    return {
        inbox: {
            "description": (
                f"An agency system's own queue, bound to the direct exchange "
                f"{names.exchange(agency_channel.AGENCY_EXCHANGE)} by its agency id. Read with "
                "manual acks as user agency-<agency id>; deduplicate by message_id."
            ),
            "parameters": {"agency_id": {"schema": {"type": "string"}}},
            "subscribe": {
                "operationId": "agency_inbox",
                "message": {
                    "name": "agency.inbox",
                    "title": "A referral change for the agency",
                    "contentType": "application/json",
                    "payload": json_schema(InboxMessageSchema),
                },
            },
            "bindings": {
                "amqp": {
                    "is": "queue",
                    "queue": {"name": inbox, "durable": True, "exclusive": False},
                }
            },
        },
        ingress: {
            "description": (
                f"Agency systems publish here (topic exchange, routing key "
                f"<agency id>.<type>) as their own user with user_id set; Opora consumes from "
                f"{names.queue(agency_channel.INGRESS_SERVICE)}. Refusals go to its dead-letter "
                "queue with the reason."
            ),
            "publish": {
                "operationId": "agency_ingress",
                "message": {
                    "oneOf": [
                        {
                            "name": message_type,
                            "title": message_type,
                            "summary": (schema.__doc__ or "").strip(),
                            "contentType": "application/json",
                            "headers": headers,
                            "payload": json_schema(schema),
                            "bindings": {"amqp": {"messageType": message_type}},
                        }
                        for message_type, schema in SCHEMAS.items()
                    ]
                },
            },
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": ingress, "type": "topic", "durable": True},
                }
            },
        },
    }
