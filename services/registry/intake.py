"""Intake of a signal a coordinator accepted without a registry family id.

Duplicate detection decides: one confident candidate -> the signal attaches to that family (its
open case, or a new one in ``preparatory``); none -> the family is registered as it is known
(``risk_group``, marked with what the coordinator must complete); several plausible, or one not
confident -> a pending intake that a coordinator resolves. One intake per signal: redelivery, or
the same signal sent twice, has no second effect.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry import domain, domain_contact_log, duplicates, duplicates_signal, events
from services.registry.domain import today
from services.registry.models import Family, Intake
from shared.db import utcnow
from shared.errors import Conflict, NotFound, RuleViolation

log = logging.getLogger(__name__)

# Attach on its own only above the score the duplicate tests hold for "the same family" (the
# Latin spelling, a typo, a changed surname all reach STRONG = 0.75; a namesake in another
# district stays under REPORTED = 0.5), and only when no second family is plausible.
CONFIDENT = duplicates.STRONG
PLAUSIBLE = duplicates.REPORTED
ATTACH, REGISTER, PENDING = "attach", "register", "pending"


def decide(candidates: list[duplicates.Candidate]) -> str:
    """``attach`` (one confident candidate), ``register`` (none) or ``pending`` (a choice).

    A match that rests on a changed surname (the same given name and birth date under another
    surname) is never confident here: a signal usually names one child, and a namesake born the
    same day is for the coordinator to rule out.
    """
    plausible = [c for c in candidates if c.score >= PLAUSIBLE]
    if not plausible:
        return REGISTER
    best = plausible[0]
    if (
        len(plausible) == 1
        and best.score >= CONFIDENT
        and "members.surname_changed" not in best.matched_fields
    ):
        return ATTACH
    return PENDING


def missing_fields(family: Family) -> list[str]:
    """What a family registered from a signal still lacks; the coordinator completes it."""
    missing = [f"address.{key}" for key in ("region", "settlement", "street", "house")]
    missing = [name for name in missing if not getattr(family, name.split(".")[1])]
    if not any(m.role != "child" for m in family.members):
        missing.append("members.adult")
    children = [m for m in family.members if m.role == "child"]
    if any(len(m.full_name.split()) < 2 for m in children):
        missing.append("members.child")
    if any(m.birth_date is None for m in children):
        missing.append("members.birth_date")
    if not family.contacts:
        missing.append("contacts")
    return missing


def get_intake(session: Session, intake_id: str) -> Intake:
    intake = session.get(Intake, intake_id)
    if intake is None:
        raise NotFound(f"no intake {intake_id}")
    return intake


def _candidate_rows(candidates: list[duplicates.Candidate]) -> list[dict[str, Any]]:
    return [
        {
            "family_id": c.family_id,
            "number": c.number,
            "score": c.score,
            "matched_fields": c.matched_fields,
        }
        for c in candidates
    ]


def accept_unmatched(session: Session, data: dict[str, Any]) -> Intake:
    """``referrals.signal.accepted`` without ``family_id``: attach, register or hold (see the
    module). Returns the signal's intake; a signal seen before returns its intake unchanged."""
    existing = session.scalar(select(Intake).where(Intake.signal_id == data["signal_id"]))
    if existing is not None:
        return existing
    known: dict[str, Any] = data["family"] or {}
    by_number = (
        session.scalar(select(Family).where(Family.number == known["number"]))
        if known.get("number")
        else None
    )
    if by_number is not None:  # the registry's own number: no guessing needed
        candidates = [duplicates.Candidate(by_number.id, by_number.number, 1.0, ["number"])]
    else:
        region = _region_of(session, data["district"])
        report = duplicates_signal.report_from_known(
            known, district=data["district"], region=region
        )
        candidates = duplicates_signal.find_for_report(session, report)
    intake = Intake(
        signal_id=data["signal_id"],
        district=data["district"],
        priority=data.get("priority"),
        reporter_agency_id=data.get("reporter_agency_id"),
        accepted_by=data["accepted_by"],
        accepted_at=data["at"],
        known=_jsonable(known),
        candidates=_candidate_rows(candidates),
        state="pending",
    )
    session.add(intake)
    session.flush()
    decision = decide(candidates)
    if decision == ATTACH:
        _attach(session, intake, candidates[0].family_id, by=None)
    elif decision == REGISTER:
        _register(session, intake, by=None)
    else:
        events.publish(
            session,
            "registry.intake.pending",
            {
                "intake_id": intake.id,
                "signal_id": intake.signal_id,
                "district": intake.district,
                "candidates": len(candidates),
            },
        )
        log.info(
            "accepted signal held for the coordinator",
            extra={"intake_id": intake.id, "candidates": len(candidates)},
        )
    return intake


def resolve(
    session: Session,
    intake: Intake,
    *,
    family_id: str | None = None,
    register: bool = False,
    by: str,
) -> Intake:
    """The coordinator's choice for a pending intake: attach to ``family_id`` or register."""
    if intake.state != "pending":
        raise Conflict(f"the intake is already {intake.state}")
    if bool(family_id) == bool(register):
        raise RuleViolation(
            "choose a family or registering a new one",
            errors={"family_id": ["give family_id, or register: true"]},
        )
    if family_id:
        if session.get(Family, family_id) is None:
            raise RuleViolation(
                "no such family in the data bank", errors={"family_id": ["unknown family"]}
            )
        _attach(session, intake, family_id, by=by)
    else:
        _register(session, intake, by=by)
    return intake


def _done(intake: Intake, state: str, family_id: str, case_id: str, by: str | None) -> None:
    intake.state = state
    intake.family_id = family_id
    intake.case_id = case_id
    intake.resolution = "coordinator" if by else "automatic"
    intake.resolved_by = by
    intake.resolved_at = utcnow()


def _attach(session: Session, intake: Intake, family_id: str, *, by: str | None) -> None:
    case, _opened = domain_contact_log.accept_signal(
        session,
        signal_id=intake.signal_id,
        family_id=family_id,
        accepted_by=intake.accepted_by,
        at=intake.accepted_at,
        agency_id=intake.reporter_agency_id,
    )
    _done(intake, "attached", family_id, case.id, by)


def _register(session: Session, intake: Intake, *, by: str | None) -> None:
    region = _region_of(session, intake.district)
    report = duplicates_signal.report_from_known(
        intake.known, district=intake.district, region=region
    )
    members = report["members"]
    if not any(m["role"] == "child" for m in members):
        # A family in the data bank has a child; the signal is about one, unnamed so far.
        members = [*members, {"role": "child", "full_name": report["surname"] or "Неизвестно"}]
    entered = min(intake.accepted_at.date(), today())
    family = domain.register_family(
        session,
        {
            "category": "risk_group",
            "category_justification": f"accepted signal {intake.signal_id}",
            "address": report["address"],
            "members": members,
            "contacts": [],
            "notes": intake.known.get("note"),
            "reported_by_agency": intake.reporter_agency_id,
            "source": f"signal:{intake.signal_id}",
        },
        by=intake.accepted_by,
        on=entered,
    )
    family.missing_fields = missing_fields(family) or None
    case, _opened = domain_contact_log.accept_signal(
        session,
        signal_id=intake.signal_id,
        family_id=family.id,
        accepted_by=intake.accepted_by,
        at=intake.accepted_at,
        agency_id=intake.reporter_agency_id,
    )
    _done(intake, "registered", family.id, case.id, by)


def _region_of(session: Session, district: str) -> str:
    """A signal names the district only: the region of the district's other families."""
    return (
        session.scalar(
            select(Family.region).where(Family.district == district, Family.region != "").limit(1)
        )
        or ""
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value
