"""What the case workspace shows, gathered from the registry and referrals at once: the case
and its stepper, problems and strengths, the agreement, the plan with each agency measure's
referral (its status and the agency's answers, read from referrals, never copied), approvals,
assessments and their chart, the contact log. One service down empties only its parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.console import charts
from services.console.clients import Clients, Outcome, gather

ASSESSMENT_DOMAINS = (
    "child_safety",
    "parenting",
    "material_conditions",
    "housing",
    "health",
    "education",
    "social_ties",
    "parents_employment",
)
"""The registry's eight domains, in its order (its AssessmentIn schema refuses others)."""
STAGES = ("preparatory", "support", "final", "closed")
OPEN_MEASURE = ("planned", "referred", "in_progress")
PARTS = (
    "problems",
    "strengths",
    "agreements",
    "measures",
    "approvals",
    "assessments",
    "contacts",
)
"""The parts of the registry's one workspace answer (GET /cases/<id>/workspace)."""


@dataclass
class Workspace:
    case: dict[str, Any]
    parts: dict[str, Outcome[Any]]
    referrals: Outcome[dict[str, dict[str, Any]]] = field(default_factory=Outcome)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def value(self, name: str, default: Any = None) -> Any:
        part = self.parts.get(name)
        return part.value if part is not None and part.ok else default

    @property
    def is_open(self) -> bool:
        return self.case.get("closed_on") is None

    @property
    def missing(self) -> list[str]:
        upcoming = self.case.get("next_stage") or {}
        return list(upcoming.get("missing") or [])

    @property
    def next_stage(self) -> str | None:
        upcoming = self.case.get("next_stage") or {}
        return upcoming.get("stage")

    @property
    def titles(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Catalogue entries by code, per catalogue (admins add codes of their own)."""
        return {
            name: {item["code"]: item for item in self.value(name, [])}
            for name in ("problem", "strength", "measure_kind")
        }

    @property
    def agencies(self) -> dict[str, dict[str, Any]]:
        return {agency["id"]: agency for agency in self.value("agencies", [])}

    @property
    def agreement(self) -> dict[str, Any] | None:
        """The latest agreement (the registry lists them oldest first)."""
        items = self.value("agreements", [])
        return items[-1] if items else None

    def chart(self) -> list[charts.Series]:
        items = (self.value("assessments") or {}).get("items") or []
        return charts.series(items, ASSESSMENT_DOMAINS) if items else []

    def referral_of(self, measure: dict[str, Any]) -> dict[str, Any] | None:
        if not self.referrals.ok or not self.referrals.value:
            return None
        return self.referrals.value.get(measure["id"])


def load(clients: Clients, case_id: str) -> Workspace:
    """The case and its parts in one registry call (a 403/404 is the page's answer), the
    catalogues and the directory beside it, then the referrals of the plan's agency measures
    and their comment threads."""
    registry, referrals = clients.registry, clients.referrals
    first = gather(
        {
            "workspace": lambda: registry.workspace(case_id),
            "problem": lambda: registry.catalogue("problem"),
            "strength": lambda: registry.catalogue("strength"),
            "measure_kind": lambda: registry.catalogue("measure_kind"),
            "agencies": referrals.agencies,
        }
    )
    whole = first.pop("workspace")
    if whole.refused is not None:
        raise whole.refused
    if whole.down is not None:
        raise whole.down
    data: dict[str, Any] = whole.value or {}
    parts: dict[str, Outcome[Any]] = {name: Outcome(value=data[name]) for name in PARTS}
    parts["family"] = Outcome(value={"number": data["number"]})
    parts.update(first)
    workspace = Workspace(data["case"], parts)
    agency_measures = [m["id"] for m in workspace.value("measures", []) if m.get("agency_id")]
    if agency_measures:
        found = gather({"referrals": lambda: referrals.referrals_of_measures(agency_measures)})
        workspace.referrals = found["referrals"]
        if workspace.referrals.ok and workspace.referrals.value:
            threads = gather(
                {
                    measure_id: _detail(referrals, referral["id"])
                    for measure_id, referral in workspace.referrals.value.items()
                }
            )
            workspace.answers = {k: v.value for k, v in threads.items() if v.ok and v.value}
    return workspace


def _detail(referrals: Any, referral_id: str) -> Any:
    return lambda: referrals.referral(referral_id)
