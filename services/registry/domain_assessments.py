"""Assessments of a family's situation (scores 1-5 in eight domains) and their dynamics: the
monitoring of the effectiveness of the work with the family."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry import events
from services.registry.domain import actor, today
from services.registry.domain_cases import require_open
from services.registry.models import ASSESSMENT_DOMAINS, Assessment, Case
from shared.errors import RuleViolation


def record_assessment(
    session: Session, case: Case, data: dict[str, Any], *, by: str | None = None
) -> Assessment:
    """A dated score 1-5 in all eight domains; announced for effectiveness monitoring."""
    require_open(case)
    scores = data["scores"]
    missing = [d for d in ASSESSMENT_DOMAINS if d not in scores]
    if missing:
        raise RuleViolation(
            "an assessment scores every domain",
            errors={f"scores.{d}": ["required"] for d in missing},
        )
    if data["assessed_on"] > today() or data["assessed_on"] < case.opened_on:
        raise RuleViolation(
            "an assessment is dated within the case",
            errors={"assessed_on": [f"between {case.opened_on} and today"]},
        )
    assessment = Assessment(
        case_id=case.id,
        assessed_on=data["assessed_on"],
        scores={d: int(scores[d]) for d in ASSESSMENT_DOMAINS},
        note=data.get("note"),
        assessed_by=actor(by),
    )
    session.add(assessment)
    session.flush()
    events.publish(
        session,
        "registry.assessment.recorded",
        {
            "assessment_id": assessment.id,
            "case_id": case.id,
            "family_id": case.family_id,
            "assessed_on": assessment.assessed_on.isoformat(),
            "scores": assessment.scores,
            "average": round(sum(assessment.scores.values()) / len(ASSESSMENT_DOMAINS), 2),
        },
    )
    return assessment


def assessments_of(session: Session, case_id: str) -> list[Assessment]:
    return list(
        session.scalars(
            select(Assessment)
            .where(Assessment.case_id == case_id)
            .order_by(Assessment.assessed_on, Assessment.recorded_at)
        )
    )


def dynamics(assessments: list[Assessment]) -> dict[str, Any]:
    """The change per domain (and on average) from the first to the latest assessment."""
    if not assessments:
        return {"count": 0, "first_on": None, "latest_on": None, "domains": {}, "average": None}
    first, latest = assessments[0], assessments[-1]
    domains = {
        d: {
            "first": first.scores[d],
            "latest": latest.scores[d],
            "change": latest.scores[d] - first.scores[d],
        }
        for d in ASSESSMENT_DOMAINS
    }
    avg_first = sum(first.scores.values()) / len(ASSESSMENT_DOMAINS)
    avg_latest = sum(latest.scores.values()) / len(ASSESSMENT_DOMAINS)
    return {
        "count": len(assessments),
        "first_on": first.assessed_on,
        "latest_on": latest.assessed_on,
        "domains": domains,
        "average": {
            "first": round(avg_first, 2),
            "latest": round(avg_latest, 2),
            "change": round(avg_latest - avg_first, 2),
        },
    }
