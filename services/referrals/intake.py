"""How referrals arrive from other services' events, rather than from a person: a plan measure
assigned to an agency, or a raid's follow-up. Both become one referral each, sent at once when an
agency is known and the family consented, else kept as a draft with the reason."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.referrals.domain import SYSTEM, create_referral, send
from services.referrals.models import KnownFamily, Referral
from shared.errors import NotFound, RuleViolation


def referral_from_measure(
    session: Session, measure: dict[str, Any], now: dt.datetime
) -> Referral | None:
    """``registry.measure.assigned`` -> a referral, once per measure (a redelivery or a second
    assignment of the same measure changes nothing). It is sent at once when an agency is known
    and the family consented; otherwise it waits as a ``draft`` with the reason, for a
    coordinator to route it or to override."""
    if session.scalar(select(Referral.id).where(Referral.measure_id == measure["measure_id"])):
        return None
    data = {
        "measure_id": measure["measure_id"],
        "family_id": measure["family_id"],
        "family_number": measure["number"],
        "district": measure["district"],
        "agency_id": measure.get("agency_id"),
        "service_code": measure["kind"],
        "reason": measure["title"],
        "deadline": measure["deadline"],
        "draft": True,
    }
    try:
        referral = create_referral(session, SYSTEM, data, now)
    except NotFound:  # an agency the directory does not know: keep the referral unrouted
        referral = create_referral(session, SYSTEM, {**data, "agency_id": None}, now)
    try:
        send(session, SYSTEM, referral, now)  # its checks all run before it writes anything
    except RuleViolation as exc:
        referral.status_reason = exc.detail
    return referral


# Raids say how pressing a follow-up is in their words; referrals speak FHIR request priority.
FOLLOWUP_URGENCY = {"routine": "routine", "priority": "urgent", "urgent": "asap"}


class FamilyNotYetKnown(Exception):
    """The follow-up arrived before the registry's family event: retried later, not dropped."""


def remember_family(session: Session, data: dict[str, Any]) -> None:
    """Keep the number and district of a family; a late older version changes nothing."""
    known = session.get(KnownFamily, data["family_id"])
    if known is not None and known.family_version >= data["family_version"]:
        return
    values = {
        "number": data["number"],
        "district": data["address"]["district"],
        "family_version": data["family_version"],
    }
    if known is None:
        session.add(KnownFamily(family_id=data["family_id"], **values))
    else:
        for key, value in values.items():
            setattr(known, key, value)


def referral_from_followup(
    session: Session, followup: dict[str, Any], now: dt.datetime
) -> Referral | None:
    """``raids.followup.requested`` -> a referral, once per follow-up; sent at once when an agency
    is known (given, or by the routing rules) and the family consented, else kept as a draft
    with the reason, like a referral from a measure."""
    if session.scalar(select(Referral.id).where(Referral.followup_id == followup["followup_id"])):
        return None
    family = session.get(KnownFamily, followup["family_id"])
    if family is None:
        raise FamilyNotYetKnown(f"family {followup['family_id']} not yet known to referrals")
    data = {
        "family_id": family.family_id,
        "family_number": family.number,
        "district": family.district,
        "agency_id": followup.get("agency_id"),
        "service_code": followup["service_code"],
        "reason": followup["reason"],
        "urgency": FOLLOWUP_URGENCY[followup["urgency"]],
        "draft": True,
    }
    try:
        referral = create_referral(session, SYSTEM, data, now)
    except NotFound:
        referral = create_referral(session, SYSTEM, {**data, "agency_id": None}, now)
    referral.followup_id = followup["followup_id"]
    try:
        send(session, SYSTEM, referral, now)
    except RuleViolation as exc:
        referral.status_reason = exc.detail
    return referral
