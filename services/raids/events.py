"""Events the raids service publishes, with their versioned schemas.

Invitations carry their iCalendar text (``ics``) so that the notifications service can attach
exactly the version the event speaks of, without calling back into raids: the ``.ics`` holds
no family's personal data, only the meeting point and a count of families.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from services.raids.models import INVITATION_STATES, PURPOSES, tables
from shared.events import event_schema
from shared.messaging.outbox import add_event

VISIT_OUTCOMES = ("visited", "nobody_home", "refused_entry")
URGENCIES = ("routine", "priority", "urgent")
ICS_MAX = 200_000


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


class AttendeeSchema(Schema):
    participant_id = fields.String(required=True)
    person_id = fields.String(required=True)
    agency_id = fields.String(required=True)
    email = fields.String(allow_none=True, load_default=None)
    state = fields.String(required=True, validate=validate.OneOf(INVITATION_STATES))


class _RaidFacts(Schema):
    """What every raid event says about the raid, so a consumer needs no second look-up."""

    raid_id = fields.String(required=True)
    title = fields.String(required=True)
    purpose = fields.String(required=True, validate=validate.OneOf(PURPOSES))
    district = fields.String(required=True)
    starts_at = fields.AwareDateTime(required=True)
    ends_at = fields.AwareDateTime(required=True)
    timezone = fields.String(required=True)
    coordinator_id = fields.String(required=True)
    raid_url = fields.String(required=True)


class _Calendar(Schema):
    sequence = fields.Integer(required=True, validate=validate.Range(min=0))
    ics = fields.String(required=True, validate=validate.Length(max=ICS_MAX))
    ics_url = fields.String(required=True)


@event_schema("raids.raid.scheduled", 1)
class RaidScheduledV1(_RaidFacts):
    """A coordinator scheduled a raid; each participant's invitation follows as
    ``raids.participant.invited``."""

    family_ids = fields.List(fields.String(), required=True)
    participants = fields.List(fields.Nested(AttendeeSchema), required=True)
    series_id = fields.String(allow_none=True, load_default=None)


@event_schema("raids.raid.updated", 1)
class RaidUpdatedV1(_RaidFacts, _Calendar):
    """The raid changed: send the attendees the new ``ics`` (same UID, higher SEQUENCE).
    ``reconfirmation_required``: the time moved, so earlier confirmations were reset."""

    changes = fields.List(fields.String(), required=True)
    reconfirmation_required = fields.Boolean(required=True)
    attendees = fields.List(fields.Nested(AttendeeSchema), required=True)


@event_schema("raids.raid.cancelled", 1)
class RaidCancelledV1(_RaidFacts, _Calendar):
    """The raid is off: ``ics`` is METHOD:CANCEL for every attendee."""

    reason = fields.String(required=True)
    cancelled_by = fields.String(required=True)
    attendees = fields.List(fields.Nested(AttendeeSchema), required=True)


@event_schema("raids.raid.completed", 1)
class RaidCompletedV1(_RaidFacts):
    """The raid is over; its report is at ``report_url``."""

    families_planned = fields.Integer(required=True)
    outcomes = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    not_visited = fields.List(fields.String(), required=True)
    followups_requested = fields.Integer(required=True)
    urgent_concerns = fields.Integer(required=True)
    report_url = fields.String(required=True)


class _ParticipantFacts(Schema):
    raid_id = fields.String(required=True)
    participant_id = fields.String(required=True)
    person_id = fields.String(required=True)
    agency_id = fields.String(required=True)
    agency_kind = fields.String(required=True)
    role = fields.String(required=True)
    coordinator_id = fields.String(required=True)
    raid_url = fields.String(required=True)


@event_schema("raids.participant.invited", 1)
class ParticipantInvitedV1(_ParticipantFacts, _Calendar):
    """Send the person the invitation with ``ics`` attached (METHOD:REQUEST)."""

    email = fields.String(allow_none=True, load_default=None)
    title = fields.String(required=True)
    starts_at = fields.AwareDateTime(required=True)
    ends_at = fields.AwareDateTime(required=True)
    timezone = fields.String(required=True)
    replaces_participant_id = fields.String(allow_none=True, load_default=None)


@event_schema("raids.participant.confirmed", 1)
class ParticipantConfirmedV1(_ParticipantFacts):
    """The person will take part."""


@event_schema("raids.participant.declined", 1)
class ParticipantDeclinedV1(_ParticipantFacts):
    """The person will not take part; ``raid_problems`` says what the raid now lacks, so the
    coordinator can invite a replacement."""

    reason = fields.String(required=True)
    raid_problems = fields.List(fields.String(), required=True)


@event_schema("raids.participant.withdrawn", 1)
class ParticipantWithdrawnV1(_ParticipantFacts, _Calendar):
    """The coordinator took the person off the raid: ``ics`` is METHOD:CANCEL for them."""

    email = fields.String(allow_none=True, load_default=None)


@event_schema("raids.followup.requested", 1)
class FollowupRequestedV1(Schema):
    """A visit asks an agency to act: the referrals service turns it into a referral."""

    followup_id = fields.String(required=True)
    raid_id = fields.String(required=True)
    visit_id = fields.String(required=True)
    family_id = fields.String(required=True)
    service_code = fields.String(required=True)  # a service of the referrals directory
    agency_id = fields.String(allow_none=True, load_default=None)  # preferred agency, if any
    reason = fields.String(required=True, validate=validate.Length(max=2000))
    urgency = fields.String(required=True, validate=validate.OneOf(URGENCIES))
    requested_by = fields.String(required=True)
    requested_at = fields.AwareDateTime(required=True)


@event_schema("raids.concern.raised", 1)
class ConcernRaisedV1(Schema):
    """A visit found children at risk: notify the raid's coordinator at once. No personal data:
    the family's registry number and a link are what a message may carry."""

    visit_id = fields.String(required=True)
    raid_id = fields.String(required=True)
    family_id = fields.String(required=True)
    family_number = fields.String(required=True)
    district = fields.String(required=True)
    coordinator_id = fields.String(required=True)
    raised_by = fields.String(required=True)
    raised_at = fields.AwareDateTime(required=True)
    visit_url = fields.String(required=True)


def publish(
    session: Session, name: str, data: dict[str, Any], version: int | None = None
) -> dict[str, Any]:
    return add_event(session, tables, name, data, producer="raids", version=version)
