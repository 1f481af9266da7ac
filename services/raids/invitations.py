"""Invitations: what participants' calendars and the event bus are told, and the participants'
side of a raid: invite, confirm, decline, withdraw, replace. Every ``.ics`` carries the raid's
current SEQUENCE, so calendars replace older versions of the entry.
"""

from __future__ import annotations

from typing import Any

from services.raids import events, ical
from services.raids.domain import ON_BOARD, Context, problems, refuse_people
from services.raids.models import Participant, Raid
from shared.db import utcnow
from shared.errors import Conflict, RuleViolation

EDITABLE = ("planned", "confirmed")
PARTICIPANT_FIELDS = ("person_id", "agency_id", "agency_kind", "display_name", "email", "role")


def require_editable(raid: Raid) -> None:
    if raid.status not in EDITABLE:
        raise Conflict(
            f"a {raid.status} raid can no longer be changed",
            errors={"status": [f"is {raid.status}"]},
        )


# --- what events and calendars say -------------------------------------------------------------


def raid_url(ctx: Context, raid: Raid) -> str:
    return f"{ctx.public_url}/raids/{raid.id}"


def calendar_entry(
    raid: Raid, public_url: str, people: list[Participant] | None = None
) -> ical.CalendarEntry:
    attendees = [
        ical.Attendee(p.email, p.display_name, p.state, p.role)
        for p in (people if people is not None else raid.participants)
        if p.email and (people is not None or p.state != "withdrawn")
    ]
    return ical.CalendarEntry(
        raid_id=raid.id,
        sequence=raid.sequence,
        title=raid.title,
        purpose=raid.purpose,
        status=raid.status,
        starts_at=raid.starts_at,
        ends_at=raid.ends_at,
        timezone=raid.timezone,
        location=raid.centre_name,
        organizer_email=raid.organizer_email,
        organizer_name=raid.organizer_name,
        attendees=attendees,
        family_count=len(raid.stops),
        url=f"{public_url}/raids/{raid.id}",
        updated_at=raid.updated_at or utcnow(),
    )


def raid_ics(raid: Raid, public_url: str) -> str:
    method = "CANCEL" if raid.status == "cancelled" else "REQUEST"
    return ical.render([calendar_entry(raid, public_url)], method=method)


def facts(ctx: Context, raid: Raid) -> dict[str, Any]:
    return {
        "raid_id": raid.id,
        "title": raid.title,
        "purpose": raid.purpose,
        "district": raid.district,
        "starts_at": raid.starts_at,
        "ends_at": raid.ends_at,
        "timezone": raid.timezone,
        "coordinator_id": raid.coordinator_id,
        "raid_url": raid_url(ctx, raid),
    }


def calendar(ctx: Context, raid: Raid, ics: str) -> dict[str, Any]:
    return {"sequence": raid.sequence, "ics": ics, "ics_url": f"{raid_url(ctx, raid)}.ics"}


def attendees(raid: Raid) -> list[dict[str, Any]]:
    return [
        {
            "participant_id": p.id,
            "person_id": p.person_id,
            "agency_id": p.agency_id,
            "email": p.email,
            "state": p.state,
        }
        for p in raid.participants
        if p.state != "withdrawn"
    ]


def _person(ctx: Context, raid: Raid, p: Participant) -> dict[str, Any]:
    return {
        "raid_id": raid.id,
        "participant_id": p.id,
        "person_id": p.person_id,
        "agency_id": p.agency_id,
        "agency_kind": p.agency_kind,
        "role": p.role,
        "coordinator_id": raid.coordinator_id,
        "raid_url": raid_url(ctx, raid),
    }


def publish_invited(ctx: Context, raid: Raid, p: Participant) -> None:
    events.publish(
        ctx.session,
        "raids.participant.invited",
        {
            **_person(ctx, raid, p),
            **calendar(ctx, raid, raid_ics(raid, ctx.public_url)),
            "email": p.email,
            "title": raid.title,
            "starts_at": raid.starts_at,
            "ends_at": raid.ends_at,
            "timezone": raid.timezone,
            "replaces_participant_id": p.replaces_id,
        },
    )


def publish_updated(ctx: Context, raid: Raid, changes: list[str], reconfirm: bool) -> None:
    events.publish(
        ctx.session,
        "raids.raid.updated",
        {
            **facts(ctx, raid),
            **calendar(ctx, raid, raid_ics(raid, ctx.public_url)),
            "changes": sorted(changes),
            "reconfirmation_required": reconfirm,
            "attendees": attendees(raid),
        },
    )


# --- participants ------------------------------------------------------------------------------


def invite(
    ctx: Context, raid: Raid, data: dict[str, Any], replaces: Participant | None = None
) -> Participant:
    """Add a person to the raid (again, if they had declined or were withdrawn)."""
    require_editable(raid)
    existing = next((p for p in raid.participants if p.person_id == data["person_id"]), None)
    if existing is not None and existing.state in ON_BOARD:
        raise Conflict(
            f"person {existing.person_id} is already on the raid",
            errors={"person_id": ["already invited"]},
        )
    participant = existing or Participant(person_id=data["person_id"])
    for name in PARTICIPANT_FIELDS:
        setattr(participant, name, data.get(name))
    participant.state = "invited"
    participant.decline_reason = None
    participant.responded_at = None
    participant.invited_at = utcnow()
    participant.replaces_id = replaces.id if replaces is not None else None
    if existing is None:
        raid.participants.append(participant)
    ctx.session.flush()
    refuse_people(ctx.session, raid, [participant])
    publish_invited(ctx, raid, participant)
    return participant


def respond(
    ctx: Context, raid: Raid, participant: Participant, accept: bool, reason: str | None
) -> None:
    """The person's answer; answering again the same way changes nothing."""
    require_editable(raid)
    if participant.state == "withdrawn":
        raise Conflict(
            "this invitation was withdrawn by the coordinator",
            errors={"state": ["is withdrawn"]},
        )
    if accept:
        if participant.state == "confirmed":
            return
        refuse_people(ctx.session, raid, [participant])
        participant.state = "confirmed"
        participant.decline_reason = None
    else:
        if participant.state == "declined":
            return
        if not reason:
            raise RuleViolation(
                "say why you decline", errors={"reason": ["required when declining"]}
            )
        participant.state = "declined"
        participant.decline_reason = reason
    participant.responded_at = utcnow()
    if accept:
        events.publish(ctx.session, "raids.participant.confirmed", _person(ctx, raid, participant))
        return
    events.publish(
        ctx.session,
        "raids.participant.declined",
        {
            **_person(ctx, raid, participant),
            "reason": reason,
            "raid_problems": problems(ctx.session, raid, ctx.rules, confirmed_only=False),
        },
    )


def withdraw(ctx: Context, raid: Raid, participant: Participant) -> None:
    """Take a person off the raid; their calendar gets a cancellation for it."""
    require_editable(raid)
    if participant.state == "withdrawn":
        return
    participant.state = "withdrawn"
    participant.responded_at = utcnow()
    ics = ical.render([calendar_entry(raid, ctx.public_url, [participant])], method="CANCEL")
    events.publish(
        ctx.session,
        "raids.participant.withdrawn",
        {**_person(ctx, raid, participant), **calendar(ctx, raid, ics), "email": participant.email},
    )


def replace(
    ctx: Context, raid: Raid, participant: Participant, data: dict[str, Any]
) -> Participant:
    """Invite someone in place of a participant (withdrawing them if they were still on)."""
    if data["person_id"] == participant.person_id:
        raise RuleViolation(
            "a replacement is another person", errors={"person_id": ["same as the replaced one"]}
        )
    if participant.state in ON_BOARD:
        withdraw(ctx, raid, participant)
    return invite(ctx, raid, data, replaces=participant)
