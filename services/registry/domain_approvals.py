"""Approvals of the support plan and of closing a Case, and the lead specialist's assignments."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from services.registry import events
from services.registry.domain import actor, get_family
from services.registry.domain_cases import (
    case_event,
    change_stage,
    get_case,
    plan_size,
    require_open,
)
from services.registry.models import Approval, Case, Family, LeadAssignment
from shared.db import utcnow
from shared.errors import Conflict, RuleViolation


def request_approval(session: Session, case: Case, kind: str, *, by: str | None = None) -> Approval:
    """Ask the coordinator to approve the plan (before support) or the closing."""
    require_open(case)
    pending = session.scalar(
        select(Approval).where(
            Approval.case_id == case.id, Approval.kind == kind, Approval.state == "pending"
        )
    )
    if pending is not None:
        raise Conflict(f"a {kind} approval is already pending")
    if kind == "plan":
        missing = []
        if case.stage != "preparatory":
            missing.append("the case is in preparatory")
        if plan_size(session, case) == 0:
            missing.append("the support plan has at least one measure")
        if case.plan_approved_at is not None:
            missing.append("the plan is not approved yet")
    else:
        missing = []
        if case.stage != "final":
            missing.append("the case is in final")
        if not (case.analysis or "").strip() or not case.outcome:
            missing.append("an analysis of the work and an outcome are recorded")
    if missing:
        raise RuleViolation(
            f"the {kind} cannot be submitted for approval: " + "; ".join(missing),
            errors={"kind": missing},
        )
    approval = Approval(case_id=case.id, kind=kind, requested_by=actor(by), state="pending")
    session.add(approval)
    session.flush()
    family = get_family(session, case.family_id)
    events.publish(
        session,
        "registry.case.approval_requested",
        {
            **case_event(case, family),
            "approval_id": approval.id,
            "kind": kind,
            "requested_by": approval.requested_by,
        },
    )
    return approval


def decide_approval(
    session: Session,
    approval: Approval,
    *,
    approve: bool,
    comment: str | None = None,
    decision_ref: str | None = None,
    decision_date: dt.date | None = None,
    by: str | None = None,
) -> Approval:
    """Approve, or refuse with a comment that returns the case to its lead specialist.

    Approving the closing closes the case: the decision's reference is required.
    """
    if approval.state != "pending":
        raise Conflict(f"this approval was already {approval.state}")
    who = actor(by)
    if who == approval.requested_by:
        raise RuleViolation(
            "a request is decided by someone other than who made it",
            errors={"decided_by": ["another person"]},
        )
    case = get_case(session, approval.case_id)
    require_open(case)
    if not approve and not (comment or "").strip():
        raise RuleViolation("a refusal says why", errors={"comment": ["required when refusing"]})
    if approve and approval.kind == "closing" and not (decision_ref or "").strip():
        raise RuleViolation(
            "closing needs the decision's reference (the commission's decision number where there is one)",
            errors={"decision_ref": ["required to approve a closing"]},
        )
    approval.state = "approved" if approve else "refused"
    approval.decided_by = who
    approval.decided_at = utcnow()
    approval.comment = comment
    approval.decision_ref = decision_ref
    approval.decision_date = decision_date
    family = get_family(session, case.family_id)
    events.publish(
        session,
        "registry.case.approval_decided",
        {
            **case_event(case, family),
            "approval_id": approval.id,
            "kind": approval.kind,
            "decision": approval.state,
            "decided_by": who,
        },
    )
    if approve and approval.kind == "plan":
        case.plan_approved_at = approval.decided_at
        case.plan_approved_by = who
    elif approve:
        case.decision_ref = decision_ref
        case.decision_date = decision_date
        change_stage(session, case, "closed", by=who)
    return approval


def approvals_list(
    *,
    state: str | None = "pending",
    kind: str | None = None,
    district: str | None = None,
    not_requested_by: str | None = None,
) -> Select[Any]:
    """Approval requests across cases with their family's number and district, oldest request
    first (the coordinator's inbox); ``not_requested_by``: those this person may decide."""
    stmt = (
        select(
            Approval.id,
            Approval.case_id,
            Approval.kind,
            Approval.state,
            Approval.requested_by,
            Approval.requested_at,
            Approval.decided_by,
            Approval.decided_at,
            Approval.comment,
            Approval.decision_ref,
            Approval.decision_date,
            Case.family_id,
            Case.stage,
            Case.lead_specialist,
            Family.number,
            Family.district,
        )
        .join(Case, Case.id == Approval.case_id)
        .join(Family, Family.id == Case.family_id)
    )
    if state:
        stmt = stmt.where(Approval.state == state)
    if kind:
        stmt = stmt.where(Approval.kind == kind)
    if district:
        stmt = stmt.where(Family.district == district)
    if not_requested_by:
        stmt = stmt.where(Approval.requested_by != not_requested_by)
    return cast("Select[Any]", stmt.order_by(Approval.requested_at, Approval.id))


def assign_lead(
    session: Session,
    case: Case,
    specialist: str,
    *,
    by: str | None = None,
    reason: str | None = None,
) -> LeadAssignment:
    """Assign or reassign the lead specialist; the previous assignment ends, history stays."""
    require_open(case)
    if case.lead_specialist == specialist:
        raise RuleViolation(
            "this specialist already leads the case",
            errors={"specialist": ["a different specialist"]},
        )
    now = utcnow()
    for current in session.scalars(
        select(LeadAssignment).where(
            LeadAssignment.case_id == case.id, LeadAssignment.ended_at.is_(None)
        )
    ):
        current.ended_at = now
    who = actor(by)
    assignment = LeadAssignment(
        case_id=case.id, specialist=specialist, assigned_by=who, assigned_at=now, reason=reason
    )
    session.add(assignment)
    previous = case.lead_specialist
    case.lead_specialist = specialist
    case.version += 1
    family = get_family(session, case.family_id)
    family.lead_specialist = specialist
    events.publish(
        session,
        "registry.case.lead_assigned",
        {**case_event(case, family), "previous_lead_specialist": previous, "assigned_by": who},
    )
    return assignment


def lead_history(session: Session, case: Case) -> list[LeadAssignment]:
    return list(
        session.scalars(
            select(LeadAssignment)
            .where(LeadAssignment.case_id == case.id)
            .order_by(LeadAssignment.assigned_at)
        )
    )
