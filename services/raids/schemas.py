"""HTTP request and response schemas of the raids service."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.raids.events import URGENCIES, VISIT_OUTCOMES
from services.raids.models import ABSENCE_KINDS, DEFAULT_TIMEZONE, PURPOSES, RAID_STATUSES
from shared.http import PageArgs, page_schema

MAX_FAMILIES = 80
MAX_PARTICIPANTS = 30
FOOD = ("adequate", "insufficient", "none")
CLEANLINESS = ("satisfactory", "unsatisfactory", "unsanitary")
HEATING = ("adequate", "insufficient", "none", "not_needed")
CHILDREN_STATE = ("good", "satisfactory", "concerning", "danger")
ADULTS_STATE = ("adequate", "intoxicated", "aggressive", "concerning", "absent")


def _timezone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("not a known time zone (e.g. Europe/Moscow)") from None


def _text(max_length: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=max_length), **kwargs)


# --- requests ----------------------------------------------------------------------------------


class CentreIn(Schema):
    """The district centre: where the team meets, leaves from and comes back to."""

    name = _text(200, required=True)
    latitude = fields.Float(required=True, validate=validate.Range(min=-90, max=90))
    longitude = fields.Float(required=True, validate=validate.Range(min=-180, max=180))


class ParticipantIn(Schema):
    person_id = _text(120, required=True)
    agency_id = _text(120, required=True)
    agency_kind = _text(60, required=True, metadata={"example": "police_pdn"})
    display_name = _text(200, required=True)
    email = fields.Email(load_default=None, allow_none=True)
    role = _text(60, load_default="member", metadata={"example": "inspector"})


class RaidIn(Schema):
    title = _text(200, required=True)
    purpose = fields.String(required=True, validate=validate.OneOf(PURPOSES))
    district = _text(120, required=True)
    date = fields.Date(required=True, metadata={"description": "local date of the raid"})
    start_time = fields.Time(required=True, metadata={"description": "local time, HH:MM"})
    end_time = fields.Time(required=True)
    timezone = fields.String(load_default=DEFAULT_TIMEZONE, validate=_timezone)
    centre = fields.Nested(CentreIn, required=True)
    organizer_email = fields.Email(load_default=None, allow_none=True)
    organizer_name = _text(200, load_default=None, allow_none=True)
    minutes_per_visit = fields.Integer(load_default=30, validate=validate.Range(min=5, max=240))
    speed_kmh = fields.Float(load_default=50.0, validate=validate.Range(min=5, max=120))
    road_factor = fields.Float(load_default=1.3, validate=validate.Range(min=1.0, max=3.0))
    family_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=36)),
        load_default=list,
        validate=validate.Length(max=MAX_FAMILIES),
    )
    participants = fields.List(
        fields.Nested(ParticipantIn),
        required=True,
        validate=validate.Length(min=1, max=MAX_PARTICIPANTS),
    )


class RaidPatch(Schema):
    """Only the fields given change."""

    title = _text(200)
    purpose = fields.String(validate=validate.OneOf(PURPOSES))
    date = fields.Date()
    start_time = fields.Time()
    end_time = fields.Time()
    timezone = fields.String(validate=_timezone)
    centre = fields.Nested(CentreIn)
    organizer_email = fields.Email()
    organizer_name = _text(200, allow_none=True)
    minutes_per_visit = fields.Integer(validate=validate.Range(min=5, max=240))
    speed_kmh = fields.Float(validate=validate.Range(min=5, max=120))
    road_factor = fields.Float(validate=validate.Range(min=1.0, max=3.0))
    family_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=36)),
        validate=validate.Length(max=MAX_FAMILIES),
    )


class ReasonIn(Schema):
    reason = _text(1000, required=True)


class DeclineIn(Schema):
    reason = _text(1000, required=True)


class CompleteIn(Schema):
    note = _text(2000, load_default=None, allow_none=True)
    allow_unvisited = fields.Boolean(load_default=False)


class RouteIn(Schema):
    distance_km = fields.List(
        fields.List(fields.Float(validate=validate.Range(min=0))),
        load_default=None,
        allow_none=True,
        metadata={"description": "(n+1)x(n+1) km: the centre first, then family_ids in order"},
    )
    family_ids = fields.List(
        fields.String(),
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_FAMILIES),
        metadata={"description": "the order of the matrix's rows after the centre"},
    )


class RaidListArgs(PageArgs):
    status = fields.String(validate=validate.OneOf(RAID_STATUSES))
    district = fields.String()
    person_id = fields.String()
    series_id = fields.String()
    starts_from = fields.Date(metadata={"description": "raids on or after this date"})
    starts_until = fields.Date(metadata={"description": "raids on or before this date"})


class ConditionsIn(Schema):
    """The checklist of the visit act."""

    food = fields.String(required=True, validate=validate.OneOf(FOOD))
    cleanliness = fields.String(required=True, validate=validate.OneOf(CLEANLINESS))
    heating = fields.String(required=True, validate=validate.OneOf(HEATING))
    children_present = fields.Boolean(required=True)
    children_state = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(CHILDREN_STATE)
    )
    adults_state = fields.String(required=True, validate=validate.OneOf(ADULTS_STATE))
    notes = _text(2000, load_default=None, allow_none=True)

    @validates_schema
    def _children(self, data: dict[str, Any], **_: Any) -> None:
        if data["children_present"] and not data.get("children_state"):
            raise ValidationError("required when children are present", "children_state")


class FollowupIn(Schema):
    service_code = _text(60, required=True, metadata={"description": "from the directory"})
    reason = _text(2000, required=True)
    urgency = fields.String(load_default="routine", validate=validate.OneOf(URGENCIES))
    agency_id = _text(120, load_default=None, allow_none=True)


class VisitIn(Schema):
    family_id = _text(36, required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(VISIT_OUTCOMES))
    visited_at = fields.AwareDateTime(load_default=None, allow_none=True)
    conditions = fields.Nested(ConditionsIn, load_default=None, allow_none=True)
    children_seen = fields.Integer(load_default=0, validate=validate.Range(min=0, max=30))
    findings = _text(4000, load_default=None, allow_none=True)
    actions_taken = _text(4000, load_default=None, allow_none=True)
    urgent_concern = fields.Boolean(load_default=False)
    urgent_reason = _text(2000, load_default=None, allow_none=True)
    followups = fields.List(
        fields.Nested(FollowupIn), load_default=list, validate=validate.Length(max=20)
    )
    participant_ids = fields.List(
        fields.String(), load_default=list, validate=validate.Length(max=MAX_PARTICIPANTS)
    )


class AbsenceIn(Schema):
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(ABSENCE_KINDS))
    note = _text(500, load_default=None, allow_none=True)


class SeriesIn(Schema):
    frequency = fields.String(required=True, validate=validate.OneOf(("weekly", "monthly")))
    interval = fields.Integer(load_default=1, validate=validate.Range(min=1, max=12))
    occurrences = fields.Integer(required=True, validate=validate.Range(min=1, max=24))
    raid = fields.Nested(RaidIn, required=True, metadata={"description": "the first raid"})


# --- responses ---------------------------------------------------------------------------------


class CentreOut(Schema):
    name = fields.String()
    latitude = fields.Float()
    longitude = fields.Float()


class ParticipantOut(Schema):
    id = fields.String()
    person_id = fields.String()
    agency_id = fields.String()
    agency_kind = fields.String()
    display_name = fields.String()
    email = fields.String(allow_none=True)
    role = fields.String()
    state = fields.String()
    decline_reason = fields.String(allow_none=True)
    replaces_id = fields.String(allow_none=True)
    invited_at = fields.DateTime()
    responded_at = fields.DateTime(allow_none=True)


class StopOut(Schema):
    position = fields.Integer()
    family_id = fields.String()
    number = fields.String(allow_none=True)
    display_name = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    settlement = fields.String(allow_none=True)
    address = fields.Dict(allow_none=True)
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    planned_arrival = fields.String(allow_none=True)
    placement = fields.String(allow_none=True)
    visit_id = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)


class RaidSummaryOut(Schema):
    id = fields.String()
    title = fields.String()
    purpose = fields.String()
    district = fields.String()
    status = fields.String()
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    timezone = fields.String()
    local_date = fields.Date()
    local_start = fields.String()
    local_end = fields.String()
    family_count = fields.Integer()
    participant_count = fields.Integer()
    series_id = fields.String(allow_none=True)
    sequence = fields.Integer()


class RaidOut(RaidSummaryOut):
    coordinator_id = fields.String()
    organizer_name = fields.String(allow_none=True)
    organizer_email = fields.String()
    centre = fields.Nested(CentreOut)
    minutes_per_visit = fields.Integer()
    speed_kmh = fields.Float()
    road_factor = fields.Float()
    cancel_reason = fields.String(allow_none=True)
    completion_note = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)
    participants = fields.List(fields.Nested(ParticipantOut))
    families = fields.List(fields.Nested(StopOut))
    route = fields.Dict(allow_none=True)
    problems = fields.List(fields.String(), metadata={"description": "what blocks confirming"})
    warnings = fields.List(fields.String())
    ics_url = fields.String()


class VisitOut(Schema):
    id = fields.String()
    raid_id = fields.String()
    family_id = fields.String()
    outcome = fields.String()
    visited_at = fields.DateTime()
    conditions = fields.Dict()
    children_seen = fields.Integer()
    findings = fields.String(allow_none=True)
    actions_taken = fields.String(allow_none=True)
    urgent_concern = fields.Boolean()
    urgent_reason = fields.String(allow_none=True)
    followups = fields.List(fields.Dict())
    participant_ids = fields.List(fields.String())
    recorded_by = fields.String()
    recorded_at = fields.DateTime()


class AbsenceOut(Schema):
    id = fields.String()
    person_id = fields.String()
    starts_on = fields.Date()
    ends_on = fields.Date()
    kind = fields.String()
    note = fields.String(allow_none=True)
    recorded_by = fields.String()
    created_at = fields.DateTime()
    affected_raids = fields.List(fields.String(), metadata={"description": "raids to re-staff"})


class SeriesOut(Schema):
    id = fields.String()
    title = fields.String()
    district = fields.String()
    frequency = fields.String()
    interval = fields.Integer()
    occurrences = fields.Integer()
    first_date = fields.Date()
    coordinator_id = fields.String()
    created_at = fields.DateTime()
    raids = fields.List(fields.Nested(RaidSummaryOut))
    warnings = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


class RouteOut(Schema):
    stops = fields.List(fields.Dict())
    total_km = fields.Float()
    travel_minutes = fields.Float()
    return_at = fields.String()
    return_local = fields.String()
    fits_window = fields.Boolean()
    solver = fields.String()
    optimal = fields.Boolean()
    warnings = fields.List(fields.String())


class KnownFamilyOut(Schema):
    family_id = fields.String()
    number = fields.String()
    category = fields.String()
    district = fields.String()
    settlement = fields.String()
    display_name = fields.String()
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)


class KnownFamilyArgs(PageArgs):
    district = fields.String()
    settlement = fields.String()
    category = fields.String(validate=validate.OneOf(("sop", "risk_group", "tzhs")))


KnownFamilyPage = page_schema(KnownFamilyOut)
RaidPage = page_schema(RaidSummaryOut)
VisitPage = page_schema(VisitOut)
AbsencePage = page_schema(AbsenceOut)
SeriesPage = page_schema(SeriesOut)


class FeedUrlOut(Schema):
    url = fields.String()
    valid_days = fields.Integer()


class FeedTokenArgs(Schema):
    token = fields.String(required=True, validate=validate.Length(min=10, max=500))
