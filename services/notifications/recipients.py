"""Who a rule tells: people resolved from the event and from the local read models.

Every resolver takes a :class:`RuleInput` and returns :class:`Addressee` rows; an inactive
contact is nobody, and someone the directory does not know yet can still get the email an
event names for them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from services.notifications import prefetch, readmodels
from services.notifications.models import (
    KnownCase,
    KnownMeasure,
    KnownReferral,
    Recipient,
    ReferralOwner,
)
from shared.config import Settings
from shared.db import utcnow

# contact roles that handle incoming referrals (an agency without them: all its contacts)
REFERRAL_ROLES = ("referrals", "head", "coordinator", "intake", "manager")
ACTIVE_ATTENDEES = ("invited", "confirmed")
# A referral's news may overtake the registry's measure and case events (two producers): for
# this long after the news the message waits for them (retried through the back-off queues),
# then goes to whom it can. Shorter than the retries' sum, so it is never a dead letter.
WAIT_FOR_READ_MODELS = dt.timedelta(minutes=5)


class ReadModelNotYetKnown(Exception):
    """A rule needs a read model another service's event has not filled yet: retried later."""


@dataclass(frozen=True)
class Addressee:
    """A person to tell and where; ``email`` from the event wins over the directory's."""

    person_id: str
    email: str | None
    phone: str | None


@dataclass(frozen=True)
class RuleInput:
    session: Session
    settings: Settings
    event_type: str
    data: dict[str, Any]


Resolver = Callable[[RuleInput], list[Addressee]]


def addressee(recipient: Recipient, email: str | None = None) -> Addressee:
    return Addressee(recipient.person_id, email or recipient.email, recipient.phone)


def person(session: Session, person_id: str | None, email: str | None = None) -> list[Addressee]:
    """One person from the directory; someone the directory does not know yet can still get
    the email the event names."""
    if not person_id:
        return []
    recipient = prefetch.get(session, Recipient, person_id)
    if recipient is None:
        return [Addressee(person_id, email, None)] if email else []
    if not recipient.active:
        return []
    return [addressee(recipient, email)]


def people(session: Session, person_ids: Iterable[str | None]) -> list[Addressee]:
    return [a for p in dict.fromkeys(person_ids) for a in person(session, p)]


def except_(resolve: Resolver, *keys: str) -> Resolver:
    """``resolve`` without the people the event names under ``keys`` (who acted)."""

    def resolved(inp: RuleInput) -> list[Addressee]:
        actors = {inp.data.get(key) for key in keys}
        return [a for a in resolve(inp) if a.person_id not in actors]

    return resolved


def coordinators_of(key: Callable[[dict[str, Any]], str | None]) -> Resolver:
    def resolve(inp: RuleInput) -> list[Addressee]:
        return [addressee(r) for r in readmodels.district_coordinators(inp.session, key(inp.data))]

    return resolve


def the_person(key: str, email_key: str | None = None) -> Resolver:
    def resolve(inp: RuleInput) -> list[Addressee]:
        email = inp.data.get(email_key) if email_key else None
        return person(inp.session, inp.data.get(key), email)

    return resolve


def referral_handlers(inp: RuleInput) -> list[Addressee]:
    contacts = readmodels.agency_contacts(inp.session, inp.data.get("agency_id"), REFERRAL_ROLES)
    return [addressee(c) for c in contacts]


def referral_watchers(inp: RuleInput) -> list[Addressee]:
    """The referral's sender and the lead of its measure's case."""
    referral = prefetch.get(inp.session, KnownReferral, inp.data["referral_id"])
    if referral is None:
        return people(inp.session, [inp.data.get("sender_id") or inp.data.get("by")])
    _wait_for_the_case(inp, referral)
    watchers = readmodels.referral_watchers(inp.session, referral)
    return people(inp.session, [inp.data.get("sender_id"), *watchers])


def _wait_for_the_case(inp: RuleInput, referral: KnownReferral) -> None:
    """The lead comes from the registry's measure and case events; while they may still be on
    their way (the news is recent), the message waits for them rather than leave the lead out."""
    at = inp.data.get("at")
    if not referral.measure_id or not isinstance(at, dt.datetime):
        return
    if utcnow() - at > WAIT_FOR_READ_MODELS:
        return
    measure = prefetch.get(inp.session, KnownMeasure, referral.measure_id)
    if measure is None or prefetch.get(inp.session, KnownCase, measure.case_id) is None:
        raise ReadModelNotYetKnown(
            f"measure {referral.measure_id} of referral {referral.referral_id} or its case "
            "is not yet known to notifications"
        )


def referral_agency_side(inp: RuleInput) -> list[Addressee]:
    """Whoever took the referral on at the agency, else the agency's referral handlers."""
    owner = prefetch.get(inp.session, ReferralOwner, inp.data["referral_id"])
    found = person(inp.session, owner.owner_id) if owner is not None else []
    return found or referral_handlers(inp)


def comment_readers(inp: RuleInput) -> list[Addressee]:
    """The other side of the thread: a comment from the agency goes to the referral's sender
    and the case lead, one from the sending side to the agency."""
    d = inp.data
    from_agency = d.get("author_agency_id") is not None and d["author_agency_id"] == d["agency_id"]
    return referral_watchers(inp) if from_agency else referral_agency_side(inp)


def attendees(inp: RuleInput) -> list[Addressee]:
    found = []
    for attendee in inp.data.get("attendees") or []:
        if attendee["state"] in ACTIVE_ATTENDEES:
            found += person(inp.session, attendee["person_id"], attendee.get("email"))
    return found
