"""The registry's HTTP API for cases: stages, agreement, approvals, lead specialist, contact log,
the support plan, problems and strengths, assessments."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.registry import (
    case_reads,
    domain_approvals,
    domain_assessments,
    domain_cases,
    domain_contact_log,
    domain_plan,
)
from services.registry.api import CASEWORK, record, record_list
from services.registry.models import Approval, Finding, Measure
from services.registry.schemas_cases import (
    AgreementIn,
    AgreementOut,
    ApprovalArgs,
    ApprovalIn,
    ApprovalOut,
    ApprovalPage,
    AssessmentIn,
    AssessmentOut,
    AssessmentsOut,
    CaseOut,
    ClosingIn,
    ContactEntryIn,
    ContactEntryOut,
    ContactEntryPage,
    DecisionIn,
    FindingIn,
    FindingOut,
    FindingPatch,
    LeadIn,
    LeadOut,
    MeasureIn,
    MeasureOut,
    MeasurePatch,
    OverdueArgs,
    OverduePage,
    OverdueSummaryArgs,
    OverdueSummaryOut,
    StageIn,
    WithdrawalIn,
)
from shared.auth.context import current_principal
from shared.auth.policy import require
from shared.auth.roles import COORDINATOR
from shared.errors import NotFound
from shared.http import PageArgs, db_session, idempotent, paginate

cases = Blueprint("cases", __name__, url_prefix="", description="Cases, stages and support plans")


def _with_access(measures: list[Measure]) -> list[Measure]:
    return case_reads.with_access(db_session(), measures)


def _case(case_id: str, action: str = "read", fields: list[str] | None = None) -> Any:
    case = domain_cases.get_case(db_session(), case_id)
    record(action, "case", case.id, case.family_id, fields=fields)
    return case


@cases.route("/cases/<case_id>", methods=["GET"])
@cases.response(200, CaseOut)
@require(*CASEWORK)
def get_case(case_id: str) -> Any:
    return _case(case_id)


@cases.route("/cases/<case_id>/stage", methods=["POST"])
@cases.arguments(StageIn)
@cases.response(200, CaseOut)
@require(*CASEWORK)
@idempotent
def change_stage(data: dict[str, Any], case_id: str) -> Any:
    """Move the case; a refusal lists in `errors.stage` what is missing."""
    case = _case(case_id, "update", ["stage"])
    return domain_cases.change_stage(db_session(), case, data["stage"])


@cases.route("/cases/<case_id>/closing", methods=["PUT"])
@cases.arguments(ClosingIn)
@cases.response(200, CaseOut)
@require(*CASEWORK)
@idempotent
def record_closing(data: dict[str, Any], case_id: str) -> Any:
    """The final stage's analysis of the work and the outcome."""
    case = _case(case_id, "update", ["analysis", "outcome"])
    return domain_cases.record_closing(
        db_session(), case, analysis=data["analysis"], outcome=data["outcome"]
    )


@cases.route("/cases/<case_id>/agreements", methods=["POST"])
@cases.arguments(AgreementIn)
@cases.response(201, AgreementOut)
@require(*CASEWORK)
@idempotent
def record_agreement(data: dict[str, Any], case_id: str) -> Any:
    """The family's signed agreement with its consents (published for referrals)."""
    case = _case(case_id, "update", ["agreement"])
    return domain_cases.record_agreement(db_session(), case, data)


@cases.route("/cases/<case_id>/agreements", methods=["GET"])
@cases.response(200, AgreementOut(many=True))
@require(*CASEWORK)
def list_agreements(case_id: str) -> Any:
    case = _case(case_id, fields=["agreement"])
    return case_reads.agreements(db_session(), case)


@cases.route("/agreements/<agreement_id>/withdrawal", methods=["POST"])
@cases.arguments(WithdrawalIn)
@cases.response(200, AgreementOut)
@require(*CASEWORK)
@idempotent
def withdraw_agreement(data: dict[str, Any], agreement_id: str) -> Any:
    """The family withdraws its agreement, with the reason: every consent it gave ends now
    (agencies lose access to the family; referrals is told by `registry.agreement.withdrawn`)."""
    session = db_session()
    agreement = domain_cases.get_agreement(session, agreement_id)
    _case(agreement.case_id, "update", ["agreement"])
    return domain_cases.withdraw_agreement(session, agreement, data["reason"])


@cases.route("/cases/<case_id>/approvals", methods=["POST"])
@cases.arguments(ApprovalIn)
@cases.response(201, ApprovalOut)
@require(*CASEWORK)
@idempotent
def request_approval(data: dict[str, Any], case_id: str) -> Any:
    """Ask the coordinator to approve the plan or the closing; the approver is notified."""
    case = _case(case_id, "update", ["approval"])
    return domain_approvals.request_approval(db_session(), case, data["kind"])


@cases.route("/cases/<case_id>/approvals", methods=["GET"])
@cases.response(200, ApprovalOut(many=True))
@require(*CASEWORK)
def list_approvals(case_id: str) -> Any:
    case = _case(case_id, fields=["approval"])
    return case_reads.approvals(db_session(), case)


@cases.route("/approvals", methods=["GET"])
@cases.arguments(ApprovalArgs, location="query")
@cases.response(200, ApprovalPage)
@require(COORDINATOR)
def approvals_inbox(args: dict[str, Any]) -> Any:
    """Approval requests across cases, oldest first (default: pending): the coordinator's
    inbox; `mine_to_decide=true` leaves out the caller's own requests."""
    stmt = domain_approvals.approvals_list(
        state=args["state"],
        kind=args.get("kind"),
        district=args.get("district"),
        not_requested_by=current_principal().subject if args["mine_to_decide"] else None,
    )
    page = paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])
    record_list("list", "approval", [a["family_id"] for a in page["items"]], fields=["number"])
    return page


@cases.route("/approvals/<approval_id>/decision", methods=["POST"])
@cases.arguments(DecisionIn)
@cases.response(200, ApprovalOut)
@require(COORDINATOR)
@idempotent
def decide(data: dict[str, Any], approval_id: str) -> Any:
    """Approve (a closing needs `decision_ref`) or refuse with a `comment`."""
    session = db_session()
    approval = session.get(Approval, approval_id)
    if approval is None:
        raise NotFound(f"no approval {approval_id}")
    _case(approval.case_id, "update", ["approval"])
    return domain_approvals.decide_approval(
        session,
        approval,
        approve=data["decision"] == "approve",
        comment=data.get("comment"),
        decision_ref=data.get("decision_ref"),
        decision_date=data.get("decision_date"),
    )


@cases.route("/cases/<case_id>/lead", methods=["PUT"])
@cases.arguments(LeadIn)
@cases.response(200, CaseOut)
@require(*CASEWORK)
@idempotent
def assign_lead(data: dict[str, Any], case_id: str) -> Any:
    """Assign or reassign the lead specialist (a staff id from the directory)."""
    case = _case(case_id, "update", ["lead_specialist"])
    domain_approvals.assign_lead(db_session(), case, data["specialist"], reason=data.get("reason"))
    return case


@cases.route("/cases/<case_id>/leads", methods=["GET"])
@cases.response(200, LeadOut(many=True))
@require(*CASEWORK)
def lead_history(case_id: str) -> Any:
    return domain_approvals.lead_history(db_session(), _case(case_id, fields=["lead_specialist"]))


@cases.route("/cases/<case_id>/contacts", methods=["POST"])
@cases.arguments(ContactEntryIn)
@cases.response(201, ContactEntryOut)
@require(*CASEWORK)
@idempotent
def log_contact(data: dict[str, Any], case_id: str) -> Any:
    """A contact-log entry: patronage visit, counselling, conversation, leisure activity."""
    case = _case(case_id, "update", ["contact_log"])
    return domain_contact_log.log_contact(db_session(), case, data)


@cases.route("/cases/<case_id>/contacts", methods=["GET"])
@cases.arguments(PageArgs, location="query")
@cases.response(200, ContactEntryPage)
@require(*CASEWORK)
def contact_log(args: dict[str, Any], case_id: str) -> Any:
    case = _case(case_id, fields=["contact_log"])
    return paginate(
        db_session(), case_reads.contacts(case), page=args["page"], page_size=args["page_size"]
    )


@cases.route("/cases/<case_id>/measures", methods=["POST"])
@cases.arguments(MeasureIn)
@cases.response(201, MeasureOut)
@require(*CASEWORK)
@idempotent
def add_measure(data: dict[str, Any], case_id: str) -> Any:
    """Add a measure to the plan; one for another agency becomes a referral. It is kept even
    without the family's consent for that agency, but grants nothing then: `agency_access`
    says why the agency cannot act yet."""
    case = _case(case_id, "update", ["plan"])
    measure = domain_plan.add_measure(db_session(), case, data)
    db_session().flush()
    return _with_access([measure])[0]


@cases.route("/cases/<case_id>/measures", methods=["GET"])
@cases.response(200, MeasureOut(many=True))
@require(*CASEWORK)
def list_measures(case_id: str) -> Any:
    """The support plan (IPR); each measure says whether it is overdue, and for another
    agency's measure whether that agency can act yet (`agency_access`)."""
    case = _case(case_id, fields=["plan"])
    return case_reads.measures(db_session(), case)


@cases.route("/measures/<measure_id>", methods=["PATCH"])
@cases.arguments(MeasurePatch)
@cases.response(200, MeasureOut)
@require(*CASEWORK)
@idempotent
def update_measure(data: dict[str, Any], measure_id: str) -> Any:
    """Status, deadline, result; `not_done` needs `not_done_reason`."""
    session = db_session()
    measure = domain_plan.get_measure(session, measure_id)
    record("update", "measure", measure.id, measure.family_id, fields=sorted(data))
    domain_plan.update_measure(session, measure, data)
    session.flush()
    return _with_access([measure])[0]


@cases.route("/measures/overdue", methods=["GET"])
@cases.arguments(OverdueArgs, location="query")
@cases.response(200, OverduePage)
@require(*CASEWORK)
def overdue(args: dict[str, Any]) -> Any:
    """Overdue measures, filtered per case, per lead specialist, per district or agency."""
    page = paginate(
        db_session(),
        domain_plan.overdue_measures(args),
        page=args["page"],
        page_size=args["page_size"],
    )
    record_list("list", "measure", [m["family_id"] for m in page["items"]], fields=["overdue"])
    return page


@cases.route("/measures/overdue/summary", methods=["GET"])
@cases.arguments(OverdueSummaryArgs, location="query")
@cases.response(200, OverdueSummaryOut)
@require(*CASEWORK)
def overdue_summary(args: dict[str, Any]) -> Any:
    """How many overdue measures per district or per lead specialist."""
    return {"items": domain_plan.overdue_summary(db_session(), args["group_by"])}


def _findings(kind: str) -> None:
    plural = f"{kind}s" if kind == "problem" else "strengths"

    @cases.route(f"/cases/<case_id>/{plural}", methods=["POST"], endpoint=f"add_{kind}")
    @cases.arguments(FindingIn)
    @cases.response(201, FindingOut)
    @require(*CASEWORK)
    @idempotent
    def add(data: dict[str, Any], case_id: str) -> Any:
        case = _case(case_id, "update", [plural])
        return domain_plan.add_finding(db_session(), case, kind, data)

    @cases.route(f"/cases/<case_id>/{plural}", methods=["GET"], endpoint=f"list_{plural}")
    @cases.response(200, FindingOut(many=True))
    @require(*CASEWORK)
    def listing(case_id: str) -> Any:
        case = _case(case_id, fields=[plural])
        return case_reads.findings(db_session(), case, kind)


_findings("problem")
_findings("strength")


@cases.route("/findings/<finding_id>", methods=["PATCH"])
@cases.arguments(FindingPatch)
@cases.response(200, FindingOut)
@require(*CASEWORK)
@idempotent
def resolve_finding(data: dict[str, Any], finding_id: str) -> Any:
    """Mark a problem resolved (or a strength no longer there) on a date."""
    session = db_session()
    finding = session.get(Finding, finding_id)
    if finding is None:
        raise NotFound(f"no finding {finding_id}")
    _case(finding.case_id, "update", [f"{finding.kind}s"])
    return domain_plan.resolve_finding(session, finding, data["resolved_on"])


@cases.route("/cases/<case_id>/assessments", methods=["POST"])
@cases.arguments(AssessmentIn)
@cases.response(201, AssessmentOut)
@require(*CASEWORK)
@idempotent
def record_assessment(data: dict[str, Any], case_id: str) -> Any:
    """Scores 1-5 in all eight domains on a date."""
    case = _case(case_id, "update", ["assessments"])
    return domain_assessments.record_assessment(db_session(), case, data)


@cases.route("/cases/<case_id>/assessments", methods=["GET"])
@cases.response(200, AssessmentsOut)
@require(*CASEWORK)
def list_assessments(case_id: str) -> Any:
    """The case's assessments and the dynamics from the first to the latest."""
    case = _case(case_id, fields=["assessments"])
    return case_reads.assessments(db_session(), case)
