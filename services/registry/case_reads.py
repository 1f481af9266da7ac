"""The lists of a case as its API answers them: one query each, shared by the per-part
endpoints (api_cases.py) and the case workspace's one-call answer (api_workspace.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from services.registry import access, domain_assessments
from services.registry.domain import today
from services.registry.models import Agreement, Approval, Case, ContactEntry, Finding, Measure


def agreements(session: Session, case: Case) -> list[Agreement]:
    return list(
        session.scalars(
            select(Agreement).where(Agreement.case_id == case.id).order_by(Agreement.signed_on)
        )
    )


def approvals(session: Session, case: Case) -> list[Approval]:
    return list(
        session.scalars(
            select(Approval).where(Approval.case_id == case.id).order_by(Approval.requested_at)
        )
    )


def findings(session: Session, case: Case, kind: str) -> list[Finding]:
    return list(
        session.scalars(
            select(Finding)
            .where(Finding.case_id == case.id, Finding.kind == kind)
            .order_by(Finding.identified_on)
        )
    )


def contacts(case: Case) -> Select[Any]:
    """The contact log, newest first (paginated by the caller)."""
    return (
        select(ContactEntry)
        .where(ContactEntry.case_id == case.id)
        .order_by(ContactEntry.occurred_on.desc(), ContactEntry.recorded_at.desc())
    )


def with_access(session: Session, measures: list[Measure]) -> list[Measure]:
    """The plan shows, for each measure of another agency, whether that agency can act yet."""
    on = today()
    for measure in measures:
        measure.agency_access = access.measure_access(session, measure, on)  # type: ignore[attr-defined]
    return measures


def measures(session: Session, case: Case) -> list[Measure]:
    return with_access(
        session,
        list(
            session.scalars(
                select(Measure)
                .where(Measure.case_id == case.id)
                .order_by(Measure.deadline, Measure.created_at)
            )
        ),
    )


def assessments(session: Session, case: Case) -> dict[str, Any]:
    """The case's assessments, oldest first, and the dynamics from the first to the latest."""
    items = domain_assessments.assessments_of(session, case.id)
    dyn = domain_assessments.dynamics(items)
    dyn["first_on"] = dyn["first_on"].isoformat() if dyn["first_on"] else None
    dyn["latest_on"] = dyn["latest_on"].isoformat() if dyn["latest_on"] else None
    return {"items": items, "dynamics": dyn}
