"""Read models kept from other services' events: who can be told (the agency directory), raids
and their attendees, case leads, measures and referrals.

Messages arrive in any order, so each upsert compares the event's version (agency_version,
raid sequence, measure_version, referral_version): an older event never overwrites a newer row.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.notifications import preferences, prefetch
from services.notifications.channels.sms import normalise_phone
from services.notifications.models import (
    KnownCase,
    KnownMeasure,
    KnownRaid,
    KnownReferral,
    RaidAttendee,
    Recipient,
    ReferralOwner,
)
from shared.events import Event

log = logging.getLogger(__name__)

COORDINATOR = "coordinator"


def phone_or_none(raw: str | None) -> str | None:
    """E.164, or None when the directory holds something SMS cannot reach (logged, no number)."""
    if not raw:
        return None
    try:
        return normalise_phone(raw)
    except ValueError as exc:
        log.info("contact phone unusable for SMS", extra={"reason": str(exc)})
        return None


# --- the agency directory ----------------------------------------------------------------------


def _contact_row(
    contact: dict[str, Any], agency: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    return {
        "person_id": contact["person_id"],
        "agency_id": agency["agency_id"],
        "agency_kind": agency.get("kind"),
        "agency_name": agency.get("name"),
        "agency_delivery": agency.get("delivery"),
        "roles": [contact["role"]],
        "districts": list(agency.get("districts") or []),
        "email": contact.get("email") or None,
        "phone": phone_or_none(contact.get("phone")),
        "active": bool(contact.get("active", True)) and bool(agency.get("active", True)),
        "agency_version": agency["agency_version"],
        "updated_at": now,
    }


def _upsert_contact(
    session: Session, row: dict[str, Any], raw_prefs: dict[str, Any] | None
) -> bool:
    current = session.get(Recipient, row["person_id"])
    if (
        current is not None
        and current.agency_id == row["agency_id"]
        and row["agency_version"] < current.agency_version
    ):
        return False
    if current is None:
        session.add(Recipient(**row))
    else:
        for key, value in row.items():
            setattr(current, key, value)
    preferences.remember_from_directory(session, row["person_id"], raw_prefs, row["updated_at"])
    return True


def remember_agencies(session: Session, events: Iterable[Event]) -> int:
    """``referrals.agency.created/updated``: whole snapshots; contacts missing from a newer
    snapshot are deactivated. Returns how many contacts changed."""
    newest: dict[str, Event] = {}
    for event in events:
        known = newest.get(event.data["agency_id"])
        if known is None or event.data["agency_version"] >= known.data["agency_version"]:
            newest[event.data["agency_id"]] = event
    changed = 0
    for event in newest.values():
        agency = event.data
        now = event.occurred_at
        seen = set()
        for contact in agency["contacts"]:
            seen.add(contact["person_id"])
            if _upsert_contact(
                session, _contact_row(contact, agency, now), contact.get("preferences")
            ):
                changed += 1
        gone = session.scalars(
            select(Recipient).where(
                Recipient.agency_id == agency["agency_id"],
                Recipient.agency_version <= agency["agency_version"],
            )
        ).all()
        for recipient in gone:
            if recipient.person_id not in seen and recipient.active:
                recipient.active = False
                recipient.agency_version = agency["agency_version"]
                changed += 1
    return changed


def remember_contact(session: Session, data: dict[str, Any], occurred_at: dt.datetime) -> bool:
    """``referrals.contact.changed``: one staff member added, updated or removed."""
    contact = data["contact"]
    agency = {
        "agency_id": data["agency_id"],
        "kind": data["agency_kind"],
        "districts": data["districts"],
        "agency_version": data["agency_version"],
        "active": True,
    }
    current = session.get(Recipient, contact["person_id"])
    if current is not None and current.agency_id == data["agency_id"]:
        # name and delivery are not in this event: keep what the snapshots said
        agency["name"] = current.agency_name
        agency["delivery"] = current.agency_delivery
    row = _contact_row(contact, agency, occurred_at)
    if data["change"] == "removed":
        row["active"] = False
    return _upsert_contact(session, row, contact.get("preferences"))


def district_coordinators(session: Session, district: str | None) -> list[Recipient]:
    """Active coordinators whose districts include ``district`` (no districts: all of them)."""

    def load() -> list[Recipient]:
        active = session.scalars(
            select(Recipient).where(Recipient.active.is_(True)).order_by(Recipient.person_id)
        )
        return [r for r in active if COORDINATOR in (r.roles or [])]

    return [
        r
        for r in prefetch.coordinators(session, load)
        if not r.districts or district in r.districts
    ]


def agency_contacts(
    session: Session, agency_id: str | None, roles: Iterable[str]
) -> list[Recipient]:
    """The agency's active contacts with one of ``roles``; if none has such a role, all of them
    (a small agency's single contact handles everything)."""
    if not agency_id:
        return []
    contacts = session.scalars(
        select(Recipient)
        .where(Recipient.agency_id == agency_id, Recipient.active.is_(True))
        .order_by(Recipient.person_id)
    ).all()
    wanted = set(roles)
    handling = [c for c in contacts if wanted & set(c.roles or [])]
    return handling or list(contacts)


def agency_name(session: Session, agency_id: str | None) -> str:
    if not agency_id:
        return ""
    name = session.scalar(
        select(Recipient.agency_name).where(
            Recipient.agency_id == agency_id, Recipient.agency_name.is_not(None)
        )
    )
    return name or ""


def agency_delivery(session: Session, agency_id: str | None) -> str | None:
    if not agency_id:
        return None
    return session.scalar(
        select(Recipient.agency_delivery).where(
            Recipient.agency_id == agency_id, Recipient.agency_delivery.is_not(None)
        )
    )


# --- raids -------------------------------------------------------------------------------------

RAID_STATUS_BY_EVENT = {
    "raids.raid.scheduled": "planned",
    "raids.raid.updated": None,  # keeps its status
    "raids.raid.cancelled": "cancelled",
    "raids.raid.completed": "completed",
}


def remember_raid(session: Session, event: Event) -> KnownRaid:
    """Scheduled/updated/cancelled/completed carry the raid's facts; ``sequence`` (the
    calendar's) orders the ones that carry it; a final status is never undone."""
    data = event.data
    raid = prefetch.get(session, KnownRaid, data["raid_id"])
    sequence = data.get("sequence", 0 if event.type == "raids.raid.scheduled" else None)
    if raid is None:
        raid = KnownRaid(raid_id=data["raid_id"], sequence=-1, status="planned")
        prefetch.add(session, raid, raid.raid_id)
    newer = sequence is None or sequence >= raid.sequence
    if newer:
        for key in ("title", "district", "starts_at", "ends_at", "timezone", "raid_url"):
            setattr(raid, key, data[key])
        raid.coordinator_id = data.get("coordinator_id")
        raid.updated_at = event.occurred_at
        if sequence is not None:
            raid.sequence = sequence
            raid.ics = data.get("ics") or raid.ics
            raid.ics_url = data.get("ics_url") or raid.ics_url
    status = RAID_STATUS_BY_EVENT.get(event.type)
    if status and raid.status not in ("cancelled", "completed"):
        raid.status = status
    if event.type == "raids.raid.cancelled":
        raid.status = "cancelled"
    for attendee in data.get("participants") or data.get("attendees") or []:
        if newer:
            remember_attendee(session, data["raid_id"], attendee, event.occurred_at)
    return raid


PARTICIPANT_STATE = {
    "raids.participant.invited": "invited",
    "raids.participant.confirmed": "confirmed",
    "raids.participant.declined": "declined",
    "raids.participant.withdrawn": "withdrawn",
}


def remember_attendee(
    session: Session, raid_id: str, attendee: dict[str, Any], at: dt.datetime
) -> RaidAttendee:
    """The newest word on a person's invitation wins (participant events carry no version)."""
    key = (raid_id, attendee["person_id"])
    row = prefetch.get(session, RaidAttendee, key)
    if row is None:
        row = RaidAttendee(raid_id=raid_id, person_id=attendee["person_id"], updated_at=at)
        prefetch.add(session, row, key)
    elif row.updated_at and row.updated_at > at:
        return row
    row.participant_id = attendee.get("participant_id") or row.participant_id
    row.agency_id = attendee.get("agency_id") or row.agency_id
    row.email = attendee.get("email") or row.email
    row.state = attendee["state"]
    row.updated_at = at
    return row


def remember_participant(session: Session, event: Event) -> RaidAttendee:
    data = dict(event.data)
    data["state"] = PARTICIPANT_STATE[event.type]
    return remember_attendee(session, data["raid_id"], data, event.occurred_at)


# --- cases, measures, referrals ----------------------------------------------------------------


def remember_case(session: Session, event: Event) -> KnownCase:
    data = event.data
    case = prefetch.get(session, KnownCase, data["case_id"])
    if case is None:
        case = KnownCase(case_id=data["case_id"], updated_at=event.occurred_at)
        prefetch.add(session, case, case.case_id)
    case.family_id = data["family_id"]
    case.family_number = data["number"]
    case.district = data["district"]
    # the newest stage event wins; an opening only fills a stage not yet known
    if event.type == "registry.case.opened":
        case.stage = case.stage or "preparatory"
    if event.type == "registry.case.stage_changed" and (
        case.stage_at is None or event.occurred_at >= case.stage_at
    ):
        case.stage = data["stage_to"]
        case.stage_at = event.occurred_at
    # case events carry the lead as of their moment: the newest event wins
    if case.updated_at is None or event.occurred_at >= case.updated_at:
        case.lead_person_id = data.get("lead_specialist")
        case.updated_at = event.occurred_at
    return case


def remember_measures(session: Session, events: Iterable[Event]) -> int:
    changed = 0
    for event in events:
        data = event.data
        measure = session.get(KnownMeasure, data["measure_id"])
        if measure is not None and measure.measure_version >= data["measure_version"]:
            continue
        if measure is None:
            measure = KnownMeasure(measure_id=data["measure_id"])
            session.add(measure)
        measure.case_id = data["case_id"]
        measure.family_number = data["number"]
        measure.kind = data["kind"]
        measure.deadline = data["deadline"]
        measure.status = data["status"]
        measure.measure_version = data["measure_version"]
        session.flush()
        changed += 1
    return changed


def remember_referral(session: Session, data: dict[str, Any]) -> KnownReferral:
    """``referrals.referral.status_changed``; the sender is who made the first step."""
    referral = prefetch.get(session, KnownReferral, data["referral_id"])
    first_step = data.get("previous_status") in (None, "draft")
    if referral is None:
        referral = KnownReferral(referral_id=data["referral_id"], referral_version=-1)
        prefetch.add(session, referral, referral.referral_id)
    if first_step and referral.sender_id is None:
        referral.sender_id = data["by"]
    if data["referral_version"] > referral.referral_version:
        referral.family_id = data["family_id"]
        referral.agency_id = data.get("agency_id")
        referral.measure_id = data.get("measure_id")
        referral.service_code = data["service_code"]
        referral.urgency = data["urgency"]
        referral.status = data["status"]
        referral.number = data.get("number") or referral.number
        referral.due_at = data.get("due_at") or referral.due_at
        referral.referral_version = data["referral_version"]
    return referral


def remember_owner(session: Session, data: dict[str, Any], at: dt.datetime) -> ReferralOwner:
    """``referrals.referral.claimed``: the newest claim (by ``referral_version``) wins."""
    owner = prefetch.get(session, ReferralOwner, data["referral_id"])
    if owner is None:
        owner = ReferralOwner(referral_id=data["referral_id"], referral_version=-1)
        prefetch.add(session, owner, owner.referral_id)
    if data["referral_version"] > owner.referral_version:
        owner.owner_id = data["owner_id"]
        owner.referral_version = data["referral_version"]
        owner.updated_at = at
    return owner


def referral_watchers(session: Session, referral: KnownReferral) -> list[str]:
    """Who follows a referral's progress: its sender and the lead of the measure's case."""
    people = [referral.sender_id] if referral.sender_id else []
    if referral.measure_id:
        measure = prefetch.get(session, KnownMeasure, referral.measure_id)
        case = prefetch.get(session, KnownCase, measure.case_id) if measure else None
        if case and case.lead_person_id:
            people.append(case.lead_person_id)
    return list(dict.fromkeys(people))
