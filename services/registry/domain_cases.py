"""A family's Case through its stages, with the guards of the technology "Family support":
preparatory -> support -> final -> closed (removed from the data bank).

Every refusal says what is missing, in ``errors["stage"]`` (or the field concerned).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.registry import events
from services.registry.domain import actor, bump, get_family, today
from services.registry.models import (
    OPEN_MEASURE_STATUSES,
    Agreement,
    Case,
    Family,
    LeadAssignment,
    Measure,
)
from shared.auth.context import optional_principal
from shared.auth.roles import LEAD_SPECIALIST
from shared.db import utcnow
from shared.errors import Conflict, NotFound, RuleViolation

log = logging.getLogger(__name__)

MOVES = {
    ("preparatory", "support"),
    ("support", "final"),
    ("final", "support"),
    ("final", "closed"),
}
APPROVAL_KINDS = ("plan", "closing")


def get_case(session: Session, case_id: str) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}")
    return case


def open_case_of(session: Session, family_id: str) -> Case | None:
    return session.scalar(select(Case).where(Case.family_id == family_id, Case.closed_on.is_(None)))


def latest_case_of(session: Session, family_id: str) -> Case | None:
    return session.scalar(
        select(Case)
        .where(Case.family_id == family_id)
        .order_by(Case.opened_on.desc(), Case.created_at.desc())
        .limit(1)
    )


def require_open(case: Case) -> None:
    if case.closed_on is not None:
        raise Conflict("the case is closed; a new report of the family opens a new case")


def case_event(case: Case, family: Family) -> dict[str, Any]:
    return {
        "case_id": case.id,
        "family_id": family.id,
        "number": family.number,
        "district": family.district,
        "lead_specialist": case.lead_specialist,
    }


def open_case(
    session: Session,
    family: Family,
    *,
    source: str,
    by: str | None = None,
    on: dt.date | None = None,
    lead: str | None = None,
    announce: bool = True,
    first: bool = False,
) -> Case:
    """Open the family's next case in ``preparatory``; a family seen before counts a re-entry.

    ``first``: the family was just entered, so it has no case to look for.
    """
    if not first and open_case_of(session, family.id) is not None:
        raise Conflict("the family already has an open case")
    who = actor(by)
    principal = optional_principal()
    if lead is None and principal is not None and principal.has_role(LEAD_SPECIALIST):
        lead = principal.subject
    before = 0
    if not first:
        before = (
            session.scalar(
                select(func.count()).select_from(Case).where(Case.family_id == family.id)
            )
            or 0
        )
    case = Case(
        family_id=family.id,
        stage="preparatory",
        opened_on=on or today(),
        reentry=bool(before),
        source=source[:80],
        entry_category=family.category,
        lead_specialist=lead,
        opened_by=who,
        version=1,
    )
    session.add(case)
    session.flush()
    if lead:
        session.add(LeadAssignment(case_id=case.id, specialist=lead, assigned_by=who))
    was_out = not family.in_bank
    family.in_bank = True
    family.stage = "preparatory"
    family.lead_specialist = lead
    if announce:
        if was_out:
            bump(session, family)
        announce_opened(session, case, family)
    return case


def announce_opened(session: Session, case: Case, family: Family) -> None:
    events.publish(
        session,
        "registry.case.opened",
        {
            **case_event(case, family),
            "opened_on": case.opened_on.isoformat(),
            "reentry": case.reentry,
            "source": case.source,
            "category": family.category,
        },
    )


def plan_size(session: Session, case: Case) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Measure)
            .where(Measure.case_id == case.id, Measure.status != "cancelled")
        )
        or 0
    )


def latest_agreement(session: Session, case: Case) -> Agreement | None:
    return session.scalar(
        select(Agreement)
        .where(Agreement.case_id == case.id)
        .order_by(Agreement.signed_on.desc(), Agreement.recorded_at.desc())
        .limit(1)
    )


# The stage that comes next in the technology; ``final`` may also go back to ``support``.
NEXT_STAGE = {"preparatory": "support", "support": "final", "final": "closed"}


def missing_for(session: Session, case: Case, stage: str, on: dt.date) -> list[tuple[str, str]]:
    """What the case lacks to enter ``stage``: (code, sentence) pairs. The refusal of a stage
    change gives the sentences; the case's ``next_stage`` gives the codes (the console labels
    them), so the two never disagree."""
    missing: list[tuple[str, str]] = []
    if stage == "support":
        agreement = latest_agreement(session, case)
        if agreement is None:
            missing.append(("agreement", "an agreement with the family is recorded"))
        else:
            if not agreement.consent_data_processing:
                missing.append(
                    (
                        "agreement_consent",
                        "the agreement has the family's consent to data processing",
                    )
                )
            if agreement.valid_until < on:
                missing.append(
                    (
                        "agreement_valid",
                        f"the agreement is valid (it expired on {agreement.valid_until})",
                    )
                )
            if agreement.withdrawn_at is not None:
                missing.append(
                    ("agreement_in_force", "the agreement is in force (the family withdrew it)")
                )
        if plan_size(session, case) == 0:
            missing.append(("plan_measure", "the support plan has at least one measure"))
        if case.plan_approved_at is None:
            missing.append(("plan_approved", "the support plan is approved by the coordinator"))
    elif stage == "final":
        unfinished = session.scalar(
            select(func.count())
            .select_from(Measure)
            .where(Measure.case_id == case.id, Measure.status.in_(OPEN_MEASURE_STATUSES))
        )
        if unfinished:
            missing.append(
                (
                    "measures_finished",
                    "every measure is done, not done with a reason, or cancelled "
                    f"({unfinished} still open)",
                )
            )
    elif stage == "closed":
        if not (case.analysis or "").strip():
            missing.append(("analysis", "an analysis of the work is recorded"))
        if not case.outcome:
            missing.append(("outcome", "an outcome is recorded"))
        if not case.decision_ref:
            missing.append(
                (
                    "closing_approved",
                    "the coordinator approved the closing with the decision's reference",
                )
            )
    return missing


def next_stage(session: Session, case: Case, on: dt.date | None = None) -> dict[str, Any] | None:
    """The stage the case goes to next and the codes of what it still lacks for it (empty: it
    may move now); None for a closed case."""
    if case.closed_on is not None or case.stage not in NEXT_STAGE:
        return None
    stage = NEXT_STAGE[case.stage]
    return {
        "stage": stage,
        "missing": [code for code, _ in missing_for(session, case, stage, on or today())],
    }


def change_stage(
    session: Session, case: Case, stage: str, *, by: str | None = None, on: dt.date | None = None
) -> Case:
    """Move the case to ``stage`` if the guards allow; RuleViolation lists what is missing."""
    require_open(case)
    if (case.stage, stage) not in MOVES:
        allowed = sorted(to for frm, to in MOVES if frm == case.stage)
        raise RuleViolation(
            f"a case in {case.stage} moves only to {', '.join(allowed)}",
            errors={"stage": [f"one of: {', '.join(allowed)}"]},
        )
    when = on or today()
    missing = [sentence for _, sentence in missing_for(session, case, stage, when)]
    if missing:
        raise RuleViolation(
            f"the case cannot enter {stage}: " + "; ".join(missing), errors={"stage": missing}
        )
    family = get_family(session, case.family_id)
    previous = case.stage
    case.stage = stage
    case.stage_changed_at = utcnow()
    case.version += 1
    family.stage = stage
    events.publish(
        session,
        "registry.case.stage_changed",
        {
            **case_event(case, family),
            "stage_from": previous,
            "stage_to": stage,
            "changed_on": when.isoformat(),
        },
    )
    if stage == "closed":
        _close(session, case, family, when)
    return case


def _close(session: Session, case: Case, family: Family, on: dt.date) -> None:
    """The family leaves the data bank: agencies lose their scope, read models are told."""
    case.closed_on = on
    case.close_category = family.category
    for assignment in session.scalars(
        select(LeadAssignment).where(
            LeadAssignment.case_id == case.id, LeadAssignment.ended_at.is_(None)
        )
    ):
        assignment.ended_at = utcnow()
    family.in_bank = False
    family.lead_specialist = None  # agencies lose their access with the open case (access)
    events.publish(
        session,
        "registry.case.closed",
        {
            **case_event(case, family),
            "closed_on": on.isoformat(),
            "outcome": case.outcome,
            "decision_ref": case.decision_ref,
            "duration_days": (on - case.opened_on).days,
        },
    )
    bump(session, family, removed=True)


def record_agreement(
    session: Session, case: Case, data: dict[str, Any], *, by: str | None = None
) -> Agreement:
    """The signed agreement; its consents are published so referrals can check them."""
    require_open(case)
    if data["signed_on"] > today():
        raise RuleViolation(
            "an agreement cannot be signed in the future",
            errors={"signed_on": ["today or earlier"]},
        )
    if data["valid_until"] <= data["signed_on"]:
        raise RuleViolation(
            "an agreement is valid after the day it is signed",
            errors={"valid_until": ["after signed_on"]},
        )
    agreement = Agreement(
        case_id=case.id,
        signed_on=data["signed_on"],
        valid_until=data["valid_until"],
        consent_data_processing=data["consent_data_processing"],
        share_with=sorted(set(data.get("share_with") or [])),
        recorded_by=actor(by),
    )
    session.add(agreement)
    session.flush()
    events.publish(session, "registry.agreement.recorded", agreement_event(agreement, case))
    return agreement


def agreement_event(agreement: Agreement, case: Case) -> dict[str, Any]:
    return {
        "agreement_id": agreement.id,
        "case_id": case.id,
        "family_id": case.family_id,
        "signed_on": agreement.signed_on.isoformat(),
        "valid_until": agreement.valid_until.isoformat(),
        "consent_data_processing": agreement.consent_data_processing,
        "share_with": agreement.share_with,
    }


def get_agreement(session: Session, agreement_id: str) -> Agreement:
    agreement = session.get(Agreement, agreement_id)
    if agreement is None:
        raise NotFound(f"no agreement {agreement_id}")
    return agreement


def withdraw_agreement(
    session: Session,
    agreement: Agreement,
    reason: str,
    *,
    by: str | None = None,
    now: dt.datetime | None = None,
) -> Agreement:
    """The family withdraws its agreement: every consent it gave ends at once (agencies lose
    their access, referrals stops sending). The event carries the whole agreement, so a
    consumer that has not yet seen it recorded still knows what ended."""
    case = get_case(session, agreement.case_id)
    require_open(case)
    if agreement.withdrawn_at is not None:
        raise Conflict("the agreement is already withdrawn")
    if not reason.strip():
        raise RuleViolation("say why the agreement is withdrawn", errors={"reason": ["required"]})
    agreement.withdrawn_at = now or utcnow()
    agreement.withdrawn_by = actor(by)
    agreement.withdrawal_reason = reason.strip()
    events.publish(
        session,
        "registry.agreement.withdrawn",
        {
            **agreement_event(agreement, case),
            "withdrawn_at": agreement.withdrawn_at.isoformat(),
            "reason": agreement.withdrawal_reason,
        },
    )
    return agreement


def record_closing(
    session: Session, case: Case, *, analysis: str, outcome: str, by: str | None = None
) -> Case:
    """The final stage's analysis of the work and its outcome, before the closing is approved."""
    require_open(case)
    if case.stage != "final":
        raise RuleViolation(
            "the analysis and outcome are recorded in the final stage",
            errors={"stage": ["move the case to final first"]},
        )
    if not analysis.strip():
        raise RuleViolation(
            "the analysis of the work is required", errors={"analysis": ["required"]}
        )
    case.analysis = analysis
    case.outcome = outcome
    case.version += 1
    return case
