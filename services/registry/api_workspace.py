"""The case workspace in one answer: the case with what it lacks for its next stage, problems
and strengths, agreements, the plan, approvals, assessments and the newest contacts. The
console's case page reads this instead of eight calls, each with its own audit row; the parts
keep their own endpoints (api_cases.py) and say the same."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.registry import case_reads, domain_cases
from services.registry.api import CASEWORK, record
from services.registry.domain import get_family
from services.registry.schemas_cases import WorkspaceArgs, WorkspaceOut
from shared.auth.policy import require
from shared.http import db_session, paginate

workspace = Blueprint(
    "workspace", __name__, url_prefix="", description="The case workspace in one answer"
)

PARTS = [
    "stage",
    "problems",
    "strengths",
    "agreement",
    "plan",
    "approval",
    "assessments",
    "contact_log",
]


@workspace.route("/cases/<case_id>/workspace", methods=["GET"])
@workspace.arguments(WorkspaceArgs, location="query")
@workspace.response(200, WorkspaceOut)
@require(*CASEWORK)
def case_workspace(args: dict[str, Any], case_id: str) -> Any:
    """Everything the case page shows, read in one transaction and audited once."""
    session = db_session()
    case = domain_cases.get_case(session, case_id)
    record("read", "case", case.id, case.family_id, fields=PARTS)
    return {
        "case": case,
        "number": get_family(session, case.family_id).number,
        "problems": case_reads.findings(session, case, "problem"),
        "strengths": case_reads.findings(session, case, "strength"),
        "agreements": case_reads.agreements(session, case),
        "measures": case_reads.measures(session, case),
        "approvals": case_reads.approvals(session, case),
        "assessments": case_reads.assessments(session, case),
        "contacts": paginate(
            session, case_reads.contacts(case), page=1, page_size=args["contacts"]
        ),
    }
