"""Reminders made from time, not from events: a raid tomorrow, a referral due soon, a measure due
soon or overdue.

Each reminder is a message keyed by a synthetic source id (``reminder:raid:<id>:<date>``,
``reminder:referral:<id>:due_soon:<date>``, ``reminder:measure:<id>:<kind>:<date>``), so the
job may run as often as it likes, on as many workers as it likes: the first makes it, the
others find it (or lose the race on the unique constraint, inside a savepoint).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.notifications import domain, preferences, readmodels
from services.notifications.labels import label
from services.notifications.models import (
    KnownCase,
    KnownMeasure,
    KnownRaid,
    KnownReferral,
    Message,
    RaidAttendee,
)
from services.notifications.preferences import Prefs, local_text
from services.notifications.recipients import (
    ACTIVE_ATTENDEES,
    REFERRAL_ROLES,
    Addressee,
    addressee,
    person,
)
from services.notifications.rules import BOTH, EMAIL
from shared.config import Settings

log = logging.getLogger(__name__)

DUE_SOON = dt.timedelta(days=2)
OPEN_REFERRALS = ("requested", "received", "accepted", "in-progress", "on-hold")
OPEN_MEASURES = ("planned", "referred", "in_progress")
REMINDER_EVENT = "notifications.reminder"


def _once(
    session: Session,
    *,
    source: str,
    who: Addressee,
    template: str,
    channels: tuple[str, ...],
    context: Callable[[Prefs], dict[str, object]],
    now: dt.datetime,
    public_url: str | None = None,
    settings: Settings | None = None,
    family_id: str | None = None,
) -> list[Message]:
    prefs = preferences.for_person(session, who.person_id)
    try:
        with session.begin_nested():
            return domain.make(
                session,
                source_id=source,
                source_type=REMINDER_EVENT,
                who=who,
                prefs=prefs,
                template=template,
                channels=channels,
                priority="normal",
                context=context(prefs),
                now=now,
                public_url=public_url,
                settings=settings,
                family_id=family_id,
            )
    except IntegrityError:  # another worker made it first
        return []


def raid_reminders(session: Session, settings: Settings, now: dt.datetime) -> int:
    """The day before a raid (in the raid's time zone), to invited and confirmed attendees;
    SMS in the person's quiet hours wait for the morning."""
    raids = session.scalars(
        select(KnownRaid).where(
            KnownRaid.status.not_in(("cancelled", "completed")),
            KnownRaid.starts_at > now,
            KnownRaid.starts_at <= now + dt.timedelta(hours=48),
        )
    ).all()
    made = 0
    for raid in raids:
        zone = preferences.zone(raid.timezone)
        raid_day = raid.starts_at.astimezone(zone).date()
        if raid_day != now.astimezone(zone).date() + dt.timedelta(days=1):
            continue
        attendees = session.scalars(
            select(RaidAttendee).where(
                RaidAttendee.raid_id == raid.raid_id, RaidAttendee.state.in_(ACTIVE_ATTENDEES)
            )
        ).all()

        def context(prefs: Prefs, raid: KnownRaid = raid) -> dict[str, object]:
            return {
                "raid_title": raid.title,
                "starts_at": local_text(raid.starts_at, prefs),
                "district": raid.district,
                "raid_url": raid.raid_url or "",
            }

        for attendee in attendees:
            for who in person(session, attendee.person_id, attendee.email):
                made += len(
                    _once(
                        session,
                        source=f"reminder:raid:{raid.raid_id}:{raid_day.isoformat()}",
                        who=who, template="raid.reminder", channels=BOTH, context=context, now=now,
                        public_url=settings.public_url, settings=settings,
                    )
                )  # fmt: skip
    return made


def referral_reminders(session: Session, settings: Settings, now: dt.datetime) -> int:
    """Open referrals due within DUE_SOON: the agency's contacts handling referrals. (Overdue
    ones come as ``referrals.referral.overdue`` events from the referrals service.)"""
    due = session.scalars(
        select(KnownReferral).where(
            KnownReferral.status.in_(OPEN_REFERRALS),
            KnownReferral.due_at > now,
            KnownReferral.due_at <= now + DUE_SOON,
        )
    ).all()
    made = 0
    for referral in due:
        assert referral.due_at is not None

        def context(prefs: Prefs, referral: KnownReferral = referral) -> dict[str, object]:
            return {
                "referral_number": referral.number or referral.referral_id[:8],
                "due_at": local_text(referral.due_at, prefs, with_time=False),
                "referral_url": f"{settings.public_url}/referrals/{referral.referral_id}",
            }

        for contact in readmodels.agency_contacts(session, referral.agency_id, REFERRAL_ROLES):
            made += len(
                _once(
                    session,
                    source=f"reminder:referral:{referral.referral_id}:due_soon:{referral.due_at:%Y-%m-%d}",
                    who=addressee(contact), template="referral.due_soon", channels=EMAIL,
                    context=context, now=now, family_id=referral.family_id,
                )
            )  # fmt: skip
    return made


def measure_reminders(session: Session, settings: Settings, now: dt.datetime) -> int:
    """Open measures due within DUE_SOON or past their deadline: the case's lead specialist,
    once per deadline and kind (a moved deadline reminds again)."""
    horizon = (now + DUE_SOON).date()
    measures = session.scalars(
        select(KnownMeasure).where(
            KnownMeasure.status.in_(OPEN_MEASURES), KnownMeasure.deadline <= horizon
        )
    ).all()
    made = 0
    for measure in measures:
        case = session.get(KnownCase, measure.case_id)
        if case is None or not case.lead_person_id:
            continue
        for who in person(session, case.lead_person_id):
            prefs = preferences.for_person(session, who.person_id)
            today = now.astimezone(prefs.zone).date()
            overdue = measure.deadline < today
            kind = "overdue" if overdue else "due_soon"

            def context(
                prefs: Prefs, m: KnownMeasure = measure, today: dt.date = today
            ) -> dict[str, object]:
                return {
                    "measure_kind": label("measure", m.kind, prefs.language),
                    "case_number": m.case_id[:8],
                    "due_at": m.deadline.strftime("%d.%m.%Y"),
                    "days_overdue": max(0, (today - m.deadline).days),
                    "case_url": f"{settings.public_url}/cases/{m.case_id}",
                }

            made += len(
                _once(
                    session,
                    source=f"reminder:measure:{measure.measure_id}:{kind}:{measure.deadline.isoformat()}",
                    who=who, template=f"measure.{kind}", channels=EMAIL, context=context, now=now,
                    family_id=case.family_id,
                )
            )  # fmt: skip
    return made


def all_reminders(session: Session, settings: Settings, now: dt.datetime) -> int:
    return (
        raid_reminders(session, settings, now)
        + referral_reminders(session, settings, now)
        + measure_reminders(session, settings, now)
    )
