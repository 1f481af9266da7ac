"""Referrals follow the family's consent, whenever it arrives or ends.

A referral made from an event (a plan measure, a raid's follow-up) waits in ``draft`` while the
family has not consented to its agency's kind; when an agreement that shares with that kind
reaches the consent read model, every such draft of the family is sent, exactly as if the
consent had been there first (so the order of the registry's events does not matter). When the
consent for a kind ends (the agreement was replaced by one that does not share with it, expired,
or was withdrawn) before the agency answered, the referral is cancelled with that reason: the
family's data no longer goes to the agency. A referral a coordinator sent without consent
(an override) stays as it is. Free of Flask and the broker; ``now`` is passed in.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from services.referrals import directory
from services.referrals.domain import SYSTEM, SYSTEM_ACTOR, send, transition
from services.referrals.models import Agency, Consent, Referral
from shared.errors import RuleViolation

# Sent, not yet answered by the agency: consent ending withdraws these.
UNANSWERED = ("requested", "received")


def why_not(session: Session, family_id: str, kind: str, on: dt.date) -> str | None:
    """None while the family consents to ``kind`` on ``on``; else the reason, in the domain's
    words (what a coordinator reads on the cancelled referral)."""
    if directory.has_consent(session, family_id, kind, on):
        return None
    agreements = session.scalars(
        select(Consent)
        .where(Consent.family_id == family_id, Consent.signed_on <= on)
        .order_by(Consent.signed_on.desc(), Consent.recorded_at.desc())
    ).all()
    if not agreements:
        return f"the family has no agreement that shares data with agencies of kind {kind}"
    in_force = [a for a in agreements if a.valid_until >= on]
    if not in_force:
        return f"the family's agreement expired on {agreements[0].valid_until.isoformat()}"
    if in_force[0].withdrawn_at is not None:
        return f"the family withdrew its agreement on {in_force[0].withdrawn_at.date().isoformat()}"
    if not in_force[0].data_processing:
        return "the family withdrew its consent to data processing"
    return f"the family's agreement no longer shares data with agencies of kind {kind}"


def follow_consent(session: Session, family_id: str, now: dt.datetime) -> tuple[int, int]:
    """Send the family's waiting drafts that its consent now covers and cancel its unanswered
    referrals that it no longer covers. Idempotent: a second call changes nothing. Returns
    (sent, cancelled)."""
    on = now.date()
    rows = session.execute(
        select(Referral, Agency.kind, Agency.active)
        .join(Agency, Agency.id == Referral.agency_id)
        .where(
            Referral.family_id == family_id,
            ((Referral.status == "draft") & (Referral.sender_id == SYSTEM_ACTOR))
            | (Referral.status.in_(UNANSWERED) & ~Referral.consent_override),
        )
        .order_by(Referral.created_at, Referral.id)
        .with_for_update(of=Referral)
    ).all()
    sent = cancelled = 0
    for referral, kind, active in rows:
        reason = why_not(session, family_id, kind, on)
        if referral.status == "draft":
            if reason is None and active:
                try:
                    send(session, SYSTEM, referral, now)
                except RuleViolation as exc:  # e.g. the agency is inactive: keep waiting
                    referral.status_reason = exc.detail
                    continue
                referral.status_reason = None
                sent += 1
        elif reason is not None:
            transition(session, SYSTEM, referral, "cancelled", now, reason=reason)
            cancelled += 1
    return sent, cancelled


def families_to_follow(session: Session, on: dt.date) -> list[str]:
    """Families whose consent changed with the calendar: an agreement that expired while a
    referral of theirs waits for the agency's answer, or one in force since today (signed ahead)
    while a draft of theirs waits for consent."""
    expired = and_(
        Referral.status.in_(UNANSWERED),
        ~Referral.consent_override,
        exists().where(Consent.family_id == Referral.family_id, Consent.valid_until < on),
    )
    began = and_(
        Referral.status == "draft",
        Referral.sender_id == SYSTEM_ACTOR,
        Referral.agency_id.is_not(None),
        exists().where(
            Consent.family_id == Referral.family_id,
            Consent.signed_on <= on,
            Consent.valid_until >= on,
        ),
    )
    return list(
        session.scalars(
            select(Referral.family_id)
            .where(expired | began)
            .distinct()
            .order_by(Referral.family_id)
        )
    )


def follow_calendar(session: Session, now: dt.datetime) -> tuple[int, int]:
    """The periodic check (like the SLA job): expiries and agreements that began today."""
    sent = cancelled = 0
    for family_id in families_to_follow(session, now.date()):
        s, c = follow_consent(session, family_id, now)
        sent, cancelled = sent + s, cancelled + c
    return sent, cancelled
