"""Events the raids service publishes (raid.scheduled and the rest come with the raids issue)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from services.raids.models import tables
from shared.events import event_schema
from shared.messaging.outbox import add_event

VISIT_OUTCOMES = ("visited", "nobody_home", "refused_entry")


@event_schema("raids.visit.recorded", 1)
class VisitRecordedV1(Schema):
    """A visit act was recorded; the registry logs it on the family's open case."""

    visit_id = fields.String(required=True)
    raid_id = fields.String(required=True)
    family_id = fields.String(required=True)
    visited_on = fields.Date(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(VISIT_OUTCOMES))
    urgent_concern = fields.Boolean(required=True)
    participants = fields.List(fields.String(), required=True)  # staff ids from the directory
    agencies = fields.List(fields.String(), required=True)  # agency ids from the directory
    summary = fields.String(required=True, validate=validate.Length(max=2000))
    recorded_by = fields.String(required=True)


def publish(
    session: Session, name: str, data: dict[str, Any], version: int | None = None
) -> dict[str, Any]:
    return add_event(session, tables, name, data, producer="raids", version=version)
