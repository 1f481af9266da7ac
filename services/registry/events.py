"""Events the registry publishes, with their versioned schemas."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from services.registry.models import CATEGORIES, tables
from shared.events import event_schema
from shared.messaging.outbox import add_event


class AddressSchema(Schema):
    region = fields.String(required=True)
    district = fields.String(required=True)
    settlement = fields.String(required=True)
    street = fields.String(allow_none=True, load_default=None)
    house = fields.String(allow_none=True, load_default=None)
    flat = fields.String(allow_none=True, load_default=None)
    latitude = fields.Float(allow_none=True, load_default=None)
    longitude = fields.Float(allow_none=True, load_default=None)


@event_schema("registry.family.registered", 1)
class FamilyRegisteredV1(Schema):
    """A family entered the data bank. Carries what raids needs to plan visits."""

    family_id = fields.String(required=True)
    number = fields.String(required=True)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    address = fields.Nested(AddressSchema, required=True)
    display_name = fields.String(required=True)
    children_count = fields.Integer(required=True, validate=validate.Range(min=0))
    family_version = fields.Integer(required=True)


@event_schema("registry.family.updated", 1)
class FamilyUpdatedV1(Schema):
    """A family's address, members or display name changed. The full snapshot, so read models
    can replace theirs; ``family_version`` orders updates that arrive out of order."""

    family_id = fields.String(required=True)
    number = fields.String(required=True)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    address = fields.Nested(AddressSchema, required=True)
    display_name = fields.String(required=True)
    children_count = fields.Integer(required=True, validate=validate.Range(min=0))
    family_version = fields.Integer(required=True)
    removed = fields.Boolean(load_default=False)


def publish(
    session: Session, name: str, data: dict[str, Any], version: int | None = None
) -> dict[str, Any]:
    return add_event(session, tables, name, data, producer="registry", version=version)
