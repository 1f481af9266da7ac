"""Referral rules, free of HTTP and broker: the lifecycle aligned one to one with HL7 FHIR Task
status, who may take which step, the consent check, and the operations that change referrals.

Every function takes ``now`` so that tests drive the clock. Errors name ids, statuses and
fields, never a family's details. The directory (agencies, routing, consents) is in
``directory.py``; signals and their triage SLA in ``signals.py``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, inspect, select
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from services.referrals import directory, numbering, sla
from services.referrals.events import REFERRAL_STATUSES, publish
from services.referrals.models import Agency, Comment, Referral, StatusChange
from services.referrals.outbound import dispatch
from shared.auth.principal import Principal
from shared.auth.roles import ADMIN, AGENCY_STAFF, AGENCY_SYSTEM, COORDINATOR, LEAD_SPECIALIST
from shared.db import get_or_404, new_id
from shared.errors import Conflict, Forbidden, NotFound, RuleViolation

STATUSES = REFERRAL_STATUSES
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"requested", "cancelled", "entered-in-error"}),
    "requested": frozenset({"received", "cancelled", "entered-in-error"}),
    "received": frozenset({"accepted", "rejected", "cancelled", "entered-in-error"}),
    "accepted": frozenset({"in-progress", "cancelled", "entered-in-error"}),
    "in-progress": frozenset({"on-hold", "completed", "failed", "cancelled", "entered-in-error"}),
    "on-hold": frozenset({"in-progress", "failed", "cancelled", "entered-in-error"}),
    "rejected": frozenset({"entered-in-error"}),
    "completed": frozenset({"entered-in-error"}),
    "failed": frozenset({"entered-in-error"}),
    "cancelled": frozenset({"entered-in-error"}),
    "entered-in-error": frozenset(),
}
OPEN_STATUSES = frozenset({"draft", "requested", "received", "accepted", "in-progress", "on-hold"})
# The sender's steps; every other step is the receiving agency's.
SENDER_STEPS = frozenset({"requested", "cancelled", "entered-in-error"})
REASON_REQUIRED = frozenset({"rejected", "failed", "cancelled", "entered-in-error"})
OUTCOME_REQUIRED = frozenset({"completed"})

SENDERS = (LEAD_SPECIALIST, COORDINATOR, ADMIN)
CROSS_AGENCY = (COORDINATOR, ADMIN)
AGENCY_SIDE = (AGENCY_STAFF, AGENCY_SYSTEM)
SYSTEM_ACTOR = "system:referrals"


@dataclass(frozen=True)
class Actor:
    """Who acts, as the rules see it: a sender (family-centre side), an agency's member, or
    both (coordinators and admins may act for either side, e.g. after a phone call)."""

    id: str
    agency_id: str | None
    sender: bool
    agency_member: bool
    may_override_consent: bool
    cross_agency: bool = False

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(
            id=principal.subject,
            agency_id=principal.agency_id,
            sender=principal.has_role(*SENDERS),
            agency_member=principal.has_role(*AGENCY_SIDE),
            may_override_consent=principal.has_role(COORDINATOR),
            cross_agency=principal.has_role(*CROSS_AGENCY),
        )


SYSTEM = Actor(SYSTEM_ACTOR, None, sender=True, agency_member=False, may_override_consent=False)


# --- the lifecycle (pure) ----------------------------------------------------------------------


def check_transition(
    current: str,
    target: str,
    *,
    reason: str | None = None,
    outcome: str | None = None,
    as_sender: bool = True,
    as_agency: bool = True,
) -> None:
    """Raise unless ``current -> target`` is a legal step for this side with what it needs."""
    if target not in TRANSITIONS:
        raise RuleViolation(
            f"unknown status {target!r}", errors={"status": [f"one of {', '.join(STATUSES)}"]}
        )
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none: the referral is final"
        raise Conflict(
            f"a referral cannot go from {current} to {target}; allowed from {current}: {allowed}",
            code="illegal-transition",
        )
    if target in SENDER_STEPS and not as_sender:
        raise Forbidden(f"only the sender may move a referral to {target}")
    if target not in SENDER_STEPS and not as_agency:
        raise Forbidden(f"only the receiving agency may move a referral to {target}")
    if target in REASON_REQUIRED and not (reason and reason.strip()):
        raise RuleViolation(
            f"{current} -> {target} needs a reason", errors={"reason": ["required for " + target]}
        )
    if target in OUTCOME_REQUIRED and not (outcome and outcome.strip()):
        raise RuleViolation(
            f"{current} -> {target} needs an outcome",
            errors={"outcome": ["required for " + target]},
        )


# --- reading and scope -------------------------------------------------------------------------


def get_referral(session: Session, referral_id: str, *, for_update: bool = False) -> Referral:
    return get_or_404(session, Referral, referral_id, for_update=for_update)


def can_see(actor: Actor, referral: Referral) -> bool:
    """Senders see every referral; an agency sees the ones addressed to it, once sent."""
    if actor.sender:
        return True
    return (
        actor.agency_member
        and actor.agency_id is not None
        and referral.agency_id == actor.agency_id
        and referral.status != "draft"
    )


def visible_referral(
    session: Session, actor: Actor, referral_id: str, *, for_update: bool = False
) -> Referral:
    """Another agency's referral is "not found", so that ids cannot be probed."""
    referral = get_referral(session, referral_id, for_update=for_update)
    if not can_see(actor, referral):
        raise NotFound(f"no referral {referral_id}")
    return referral


def _acts_for_agency(actor: Actor, referral: Referral) -> bool:
    if actor.cross_agency:
        return True
    return actor.agency_member and referral.agency_id == actor.agency_id


# --- changes -----------------------------------------------------------------------------------


def create_referral(
    session: Session,
    actor: Actor,
    data: dict[str, Any],
    now: dt.datetime,
    *,
    consent_override_reason: str | None = None,
) -> Referral:
    """A referral by hand: a ``draft``, or sent at once, consent permitting.

    Sent at once is one step, ``null -> requested``: one history row and one event, like any
    other step. Every check runs before anything is written or a number is taken, so a refusal
    leaves no gap in the numbers."""
    if not actor.sender:
        raise Forbidden("only lead specialists and coordinators send referrals")
    agency = directory.resolve_agency(
        session, data.get("agency_id"), data["service_code"], data["district"]
    )
    if data.get("measure_id") and session.scalar(
        select(Referral.id).where(Referral.measure_id == data["measure_id"])
    ):
        raise Conflict("the measure already has a referral", errors={"measure_id": ["taken"]})
    referral = Referral(
        measure_id=data.get("measure_id"),
        family_id=data["family_id"],
        family_number=data["family_number"],
        district=data["district"],
        agency_id=agency.id if agency else None,
        service_code=data["service_code"],
        reason=data["reason"],
        urgency=data.get("urgency", "routine"),
        deadline=data.get("deadline"),
        contact=data.get("contact") or {},
        sender_id=actor.id,
        sender_agency_id=actor.agency_id,
        version=0,
        created_at=now,
        updated_at=now,
        history=[],  # a new referral has none yet: no load to find that out
        comments=[],
    )
    status = "draft" if data.get("draft", False) else "requested"
    if status == "requested":
        _check_sendable(session, actor, referral, agency, now, consent_override_reason)
        sla.start(referral, sla.SlaRules.current(), now)
    referral.number = numbering.next_number(session, now)
    session.add(referral)
    _record(session, referral, None, status, actor.id, now)
    return referral


def send(
    session: Session,
    actor: Actor,
    referral: Referral,
    now: dt.datetime,
    *,
    consent_override_reason: str | None = None,
    rules: sla.SlaRules | None = None,
) -> None:
    """``draft -> requested``: the family's data leaves for an agency, so consent is checked;
    the SLA clock starts."""
    check_transition(referral.status, "requested", as_sender=actor.sender, as_agency=False)
    agency = directory.get_agency(session, referral.agency_id) if referral.agency_id else None
    _check_sendable(session, actor, referral, agency, now, consent_override_reason)
    sla.start(referral, rules or sla.SlaRules.current(), now)
    _record(session, referral, referral.status, "requested", actor.id, now)


def _check_sendable(
    session: Session,
    actor: Actor,
    referral: Referral,
    agency: Agency | None,
    now: dt.datetime,
    consent_override_reason: str | None,
) -> None:
    if agency is None:
        raise RuleViolation(
            "the referral has no agency: give one or add a routing rule",
            errors={"agency_id": ["required to send"]},
        )
    if not agency.active:
        raise RuleViolation("the agency is inactive", errors={"agency_id": ["inactive"]})
    _check_consent(session, actor, referral, agency, now, consent_override_reason)


def _check_consent(
    session: Session,
    actor: Actor,
    referral: Referral,
    agency: Agency,
    now: dt.datetime,
    override_reason: str | None,
) -> None:
    if directory.has_consent(session, referral.family_id, agency.kind, now.date()):
        return
    if not override_reason or not override_reason.strip():
        raise RuleViolation(
            f"the family has not consented to sharing data with agencies of kind {agency.kind}",
            errors={"agency_id": [f"no consent for kind {agency.kind}"]},
            code="consent-missing",
        )
    if not actor.may_override_consent:
        raise Forbidden("only a coordinator may send a referral without the family's consent")
    referral.consent_override = True
    referral.consent_override_reason = override_reason.strip()


def transition(
    session: Session,
    actor: Actor,
    referral: Referral,
    target: str,
    now: dt.datetime,
    *,
    reason: str | None = None,
    outcome: str | None = None,
    expected_version: int | None = None,
    consent_override_reason: str | None = None,
) -> Referral:
    """Move a referral one step; ``expected_version`` guards against a stale client."""
    if expected_version is not None and expected_version != referral.version:
        raise Conflict(
            f"the referral is at version {referral.version}, not {expected_version}; reload it",
            code="stale-version",
        )
    if target == "requested" and referral.status == "draft":
        send(session, actor, referral, now, consent_override_reason=consent_override_reason)
        return referral
    check_transition(
        referral.status,
        target,
        reason=reason,
        outcome=outcome,
        as_sender=actor.sender,
        as_agency=_acts_for_agency(actor, referral),
    )
    if target == "on-hold":
        referral.hold_note = reason
    _record(session, referral, referral.status, target, actor.id, now, reason, outcome)
    return referral


def address(
    session: Session, actor: Actor, referral: Referral, agency_id: str, now: dt.datetime
) -> None:
    """Give a draft its agency (a manual override of the routing, e.g. for an unrouted measure)."""
    if not actor.sender:
        raise Forbidden("only the sender addresses a referral")
    if referral.status != "draft":
        raise Conflict(f"only a draft changes its agency; this referral is {referral.status}")
    referral.agency_id = directory.get_agency(session, agency_id).id
    referral.status_reason = None
    referral.version += 1
    referral.updated_at = now


def claim(session: Session, actor: Actor, referral: Referral, now: dt.datetime) -> Referral:
    """Any staff member of the addressed agency takes the referral on; one owner at a time."""
    if not (actor.agency_member and referral.agency_id == actor.agency_id):
        raise Forbidden("only the addressed agency's staff claim a referral")
    if referral.status not in OPEN_STATUSES or referral.status == "draft":
        raise Conflict(f"a {referral.status} referral cannot be claimed")
    if referral.owner_id == actor.id:
        return referral
    if referral.owner_id is not None:
        raise Conflict("the referral is already claimed by another staff member")
    referral.owner_id = actor.id
    referral.version += 1
    referral.updated_at = now
    claimed = {
        "referral_id": referral.id,
        "agency_id": referral.agency_id,
        "owner_id": actor.id,
        "at": now.isoformat(),
        "referral_version": referral.version,
    }
    publish(session, "referrals.referral.claimed", claimed)
    dispatch(session, referral, "referrals.referral.claimed", claimed, now=now)
    return referral


def add_comment(
    session: Session, actor: Actor, referral: Referral, body: str, now: dt.datetime
) -> Comment:
    if referral.status == "entered-in-error":
        raise Conflict("an entered-in-error referral takes no comments")
    comment = Comment(
        referral=referral, author_id=actor.id, author_agency_id=actor.agency_id, body=body, at=now
    )
    session.add(comment)
    referral.updated_at = now  # agency systems polling for changes see the new comment
    session.flush()
    commented = {
        "referral_id": referral.id,
        "comment_id": comment.id,
        "agency_id": referral.agency_id,
        "sender_id": referral.sender_id,
        "author_id": actor.id,
        "author_agency_id": actor.agency_id,
        "at": now.isoformat(),
    }
    publish(session, "referrals.referral.commented", commented)
    dispatch(session, referral, "referrals.referral.commented", commented, now=now)
    return comment


def _record(
    session: Session,
    referral: Referral,
    previous: str | None,
    status: str,
    by: str,
    now: dt.datetime,
    reason: str | None = None,
    outcome: str | None = None,
) -> None:
    """The one place a status changes: history row, version, event, in one transaction."""
    referral.status = status
    referral.version += 1
    referral.updated_at = now
    if reason is not None:
        referral.status_reason = reason
    if outcome is not None:
        referral.outcome = outcome
    session.flush()  # the referral's row first: its step refers to it
    _add_step(
        session,
        referral,
        {
            "id": new_id(),
            "referral_id": referral.id,
            "seq": referral.version,
            "from_status": previous,
            "to_status": status,
            "reason": reason,
            "outcome": outcome,
            "at": now,
            "by": by,
        },
    )
    changed = {
        "referral_id": referral.id,
        "measure_id": referral.measure_id,
        "family_id": referral.family_id,
        "agency_id": referral.agency_id,
        "service_code": referral.service_code,
        "urgency": referral.urgency,
        "status": status,
        "previous_status": previous,
        "reason": reason,
        "outcome": outcome,
        "at": now.isoformat(),
        "by": by,
        "referral_version": referral.version,
        "number": referral.number,
        "due_at": _iso(referral.due_at),
        "acknowledge_due_at": _iso(referral.acknowledge_due_at) if status == "requested" else None,
    }
    publish(session, "referrals.referral.status_changed", changed)
    dispatch(session, referral, "referrals.referral.status_changed", changed, now=now)


_STEPS: Table = StatusChange.__table__  # type: ignore[assignment]
_STEP_INSERT = _STEPS.insert()


def _add_step(session: Session, referral: Referral, step: dict[str, Any]) -> None:
    """A step is written once and never changed: a plain INSERT, then the same row as a stored
    object of the session, so that ``referral.history`` stays true. Through the unit of work a
    second table in the flush cost as much as the referral's own row."""
    session.execute(_STEP_INSERT, step)
    change = StatusChange(**step)
    make_transient_to_detached(change)
    session.add(change)
    if "history" not in inspect(referral).unloaded:
        set_committed_value(referral, "history", [*referral.history, change])


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# --- from the registry's plan ------------------------------------------------------------------
