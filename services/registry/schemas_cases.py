"""HTTP schemas of cases, support plans, assessments, statistics and catalogues."""

from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy.orm import object_session

from services.registry.access import ACCESS_REASONS
from services.registry.domain_cases import next_stage
from services.registry.models import (
    ASSESSMENT_DOMAINS,
    CONTACT_LOG_KINDS,
    MEASURE_STATUSES,
    OUTCOMES,
    STAGES,
)
from shared.agencies import AGENCY_KINDS
from shared.http import PageArgs, page_schema

KIND_CODE = validate.Regexp(r"^[a-z][a-z0-9_]{1,59}$")


class NextStageOut(Schema):
    stage = fields.String(metadata={"description": "the stage the case goes to next"})
    missing = fields.List(
        fields.String(),
        metadata={
            "description": "codes of what the case lacks for it (empty: it may move now): "
            "agreement, agreement_consent, agreement_valid, agreement_in_force, plan_measure, "
            "plan_approved, "
            "measures_finished, analysis, outcome, closing_approved"
        },
    )


class CaseOut(Schema):
    id = fields.String()
    family_id = fields.String()
    stage = fields.String()
    opened_on = fields.Date()
    closed_on = fields.Date(allow_none=True)
    reentry = fields.Boolean()
    source = fields.String()
    entry_category = fields.String()
    lead_specialist = fields.String(allow_none=True)
    analysis = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    decision_ref = fields.String(allow_none=True)
    decision_date = fields.Date(allow_none=True)
    plan_approved_at = fields.DateTime(allow_none=True)
    plan_approved_by = fields.String(allow_none=True)
    version = fields.Integer()
    next_stage = fields.Method(
        "_next_stage",
        metadata={
            "description": "null when closed; else {stage, missing}: the same rule that refuses "
            "a stage change"
        },
    )

    def _next_stage(self, case: Any) -> dict[str, Any] | None:
        session = object_session(case)
        upcoming = None if session is None else next_stage(session, case)
        return None if upcoming is None else NextStageOut().dump(upcoming)


class CaseOpenIn(Schema):
    source = fields.String(load_default="report", validate=validate.Length(min=1, max=80))
    lead_specialist = fields.String(load_default=None, validate=validate.Length(max=120))


class StageIn(Schema):
    stage = fields.String(required=True, validate=validate.OneOf(STAGES))


class ClosingIn(Schema):
    analysis = fields.String(required=True, validate=validate.Length(min=1, max=8000))
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))


class AgreementIn(Schema):
    signed_on = fields.Date(required=True)
    valid_until = fields.Date(required=True)
    consent_data_processing = fields.Boolean(required=True)
    share_with = fields.List(
        fields.String(validate=validate.OneOf(AGENCY_KINDS)),
        load_default=list,
        metadata={"description": "kinds of agencies the family's data may be shared with"},
    )


class AgreementOut(AgreementIn):
    id = fields.String()
    case_id = fields.String()
    recorded_by = fields.String()
    recorded_at = fields.DateTime()
    withdrawn_at = fields.DateTime(
        allow_none=True, metadata={"description": "set when the family withdrew the agreement"}
    )
    withdrawn_by = fields.String(allow_none=True)
    withdrawal_reason = fields.String(allow_none=True)


class WithdrawalIn(Schema):
    reason = fields.String(
        required=True,
        validate=validate.Length(min=1, max=2000),
        metadata={"description": "why the agreement ends (no family member's personal data)"},
    )


class ApprovalIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(("plan", "closing")))


class DecisionIn(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(("approve", "refuse")))
    comment = fields.String(load_default=None, validate=validate.Length(max=4000))
    decision_ref = fields.String(
        load_default=None,
        validate=validate.Length(max=120),
        metadata={"description": "e.g. the commission's decision number"},
    )
    decision_date = fields.Date(load_default=None)


class ApprovalOut(Schema):
    id = fields.String()
    case_id = fields.String()
    kind = fields.String()
    state = fields.String()
    requested_by = fields.String()
    requested_at = fields.DateTime()
    decided_by = fields.String(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    comment = fields.String(allow_none=True)
    decision_ref = fields.String(allow_none=True)
    decision_date = fields.Date(allow_none=True)


class ApprovalArgs(PageArgs):
    state = fields.String(
        load_default="pending", validate=validate.OneOf(("pending", "approved", "refused"))
    )
    kind = fields.String(validate=validate.OneOf(("plan", "closing")))
    district = fields.String()
    mine_to_decide = fields.Boolean(
        load_default=False,
        metadata={
            "description": "true: leave out the requests the caller made (no one decides their own)"
        },
    )


class ApprovalListOut(ApprovalOut):
    family_id = fields.String()
    number = fields.String(metadata={"description": "the family's number in the data bank"})
    district = fields.String()
    stage = fields.String()
    lead_specialist = fields.String(allow_none=True)


class LeadIn(Schema):
    specialist = fields.String(required=True, validate=validate.Length(min=1, max=120))
    reason = fields.String(load_default=None, validate=validate.Length(max=2000))


class LeadOut(Schema):
    specialist = fields.String()
    assigned_by = fields.String()
    assigned_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    reason = fields.String(allow_none=True)


class ContactEntryIn(Schema):
    occurred_on = fields.Date(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(CONTACT_LOG_KINDS))
    staff = fields.List(fields.String(validate=validate.Length(min=1, max=120)), load_default=None)
    note = fields.String(load_default=None, validate=validate.Length(max=2000))


class ContactEntryOut(Schema):
    id = fields.String()
    occurred_on = fields.Date()
    kind = fields.String()
    staff = fields.List(fields.String())
    note = fields.String(allow_none=True)
    recorded_by = fields.String()
    recorded_at = fields.DateTime()


class MeasureIn(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=300))
    kind = fields.String(required=True, validate=KIND_CODE)
    agency_id = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "responsible agency from the referrals directory; none = the centre"
        },
    )
    deadline = fields.Date(required=True)


class MeasurePatch(Schema):
    title = fields.String(validate=validate.Length(min=1, max=300))
    status = fields.String(validate=validate.OneOf(MEASURE_STATUSES))
    deadline = fields.Date()
    result_note = fields.String(allow_none=True, validate=validate.Length(max=4000))
    not_done_reason = fields.String(allow_none=True, validate=validate.Length(max=2000))


class AgencyAccessOut(Schema):
    """Whether the measure's agency can act: it reads the family only under the family's
    consent (services/registry/access.py)."""

    granted = fields.Boolean(required=True)
    reason = fields.String(
        allow_none=True,
        validate=validate.OneOf(tuple(ACCESS_REASONS)),
        metadata={
            "description": "why not, when not granted: "
            + "; ".join(f"`{code}`: {text}" for code, text in ACCESS_REASONS.items())
        },
    )


class MeasureOut(Schema):
    id = fields.String()
    case_id = fields.String()
    family_id = fields.String()
    title = fields.String()
    kind = fields.String()
    agency_id = fields.String(allow_none=True)
    deadline = fields.Date()
    status = fields.String()
    overdue = fields.Method("_overdue")
    result_note = fields.String(allow_none=True)
    not_done_reason = fields.String(allow_none=True)
    referral_id = fields.String(allow_none=True)
    version = fields.Integer()
    agency_access = fields.Nested(
        AgencyAccessOut,
        allow_none=True,
        metadata={
            "description": "for a measure of another agency: whether that agency can act yet "
            "(a measure without the family's consent is kept but grants nothing); "
            "null for the centre's own"
        },
    )

    def _overdue(self, measure: Any) -> bool:
        return measure.status in ("planned", "referred", "in_progress") and (
            measure.deadline < dt.datetime.now(dt.UTC).date()
        )


class OverdueArgs(PageArgs):
    district = fields.String()
    lead_specialist = fields.String()
    case_id = fields.String()
    agency_id = fields.String()
    today = fields.Date(
        data_key="as_of",
        metadata={
            "description": "overdue as of this date (default today): next Monday lists what is "
            "overdue or falls due this week"
        },
    )


class OverdueOut(Schema):
    measure_id = fields.String()
    case_id = fields.String()
    family_id = fields.String()
    number = fields.String()
    district = fields.String()
    lead_specialist = fields.String(allow_none=True)
    title = fields.String()
    kind = fields.String()
    agency_id = fields.String(allow_none=True)
    deadline = fields.Date()
    status = fields.String()


class OverdueSummaryArgs(Schema):
    group_by = fields.String(
        load_default="district", validate=validate.OneOf(("district", "lead_specialist"))
    )


class FindingIn(Schema):
    code = fields.String(required=True, validate=KIND_CODE)
    note = fields.String(load_default=None, validate=validate.Length(max=2000))
    identified_on = fields.Date(required=True)


class FindingPatch(Schema):
    resolved_on = fields.Date(required=True)


class FindingOut(Schema):
    id = fields.String()
    kind = fields.String()
    code = fields.String()
    note = fields.String(allow_none=True)
    identified_on = fields.Date()
    resolved_on = fields.Date(allow_none=True)
    recorded_by = fields.String()
    recorded_at = fields.DateTime(allow_none=True)


class AssessmentIn(Schema):
    assessed_on = fields.Date(required=True)
    scores = fields.Dict(
        keys=fields.String(validate=validate.OneOf(ASSESSMENT_DOMAINS)),
        values=fields.Integer(strict=True, validate=validate.Range(min=1, max=5)),
        required=True,
    )
    note = fields.String(load_default=None, validate=validate.Length(max=2000))


class AssessmentOut(Schema):
    id = fields.String()
    assessed_on = fields.Date()
    scores = fields.Dict(keys=fields.String(), values=fields.Integer())
    note = fields.String(allow_none=True)
    assessed_by = fields.String()


class AssessmentsOut(Schema):
    items = fields.List(fields.Nested(AssessmentOut))
    dynamics = fields.Dict()


class StatisticsArgs(Schema):
    region = fields.String()
    district = fields.String()
    year_from = fields.Integer(validate=validate.Range(min=2000, max=2100))
    year_to = fields.Integer(validate=validate.Range(min=2000, max=2100))
    by = fields.String(load_default="district", validate=validate.OneOf(("district", "region")))
    format = fields.String(
        load_default="json", validate=validate.OneOf(("json", "csv", "xlsx", "png"))
    )

    @validates_schema
    def _years(self, data: dict[str, Any], **_: Any) -> None:
        this_year = dt.datetime.now(dt.UTC).year
        data.setdefault("year_to", this_year)
        data.setdefault("year_from", data["year_to"] - 3)
        if data["year_from"] > data["year_to"]:
            raise ValidationError("not after year_to", field_name="year_from")
        if data["year_to"] - data["year_from"] > 30:
            raise ValidationError("at most 30 years at once", field_name="year_from")


class CatalogueEntryIn(Schema):
    code = fields.String(required=True, validate=KIND_CODE)
    title_ru = fields.String(required=True, validate=validate.Length(min=1, max=200))
    title_en = fields.String(required=True, validate=validate.Length(min=1, max=200))


class CatalogueEntryOut(CatalogueEntryIn):
    built_in = fields.Boolean()
    active = fields.Boolean()


class CatalogueOut(Schema):
    catalogue = fields.String()
    items = fields.List(fields.Nested(CatalogueEntryOut))


CasePage = page_schema(CaseOut)
OverduePage = page_schema(OverdueOut)
ApprovalPage = page_schema(ApprovalListOut)
ContactEntryPage = page_schema(ContactEntryOut)


class OverdueSummaryOut(Schema):
    items = fields.List(
        fields.Dict(), metadata={"description": "{district|lead_specialist, overdue}"}
    )


class StatisticsOut(Schema):
    year_from = fields.Integer()
    year_to = fields.Integer()
    region = fields.String(allow_none=True)
    district = fields.String(allow_none=True)
    by = fields.String()
    rows = fields.List(
        fields.Dict(),
        metadata={
            "description": "region, district, year, in_bank_at_year_end{category,total}, entered, "
            "re_entered, removed{outcome,total}, average_duration_days{category}"
        },
    )


class WorkspaceArgs(Schema):
    contacts = fields.Integer(
        load_default=50,
        validate=validate.Range(min=1, max=200),
        metadata={"description": "how many of the newest contact-log entries"},
    )


class WorkspaceOut(Schema):
    """The case and its parts, as their own endpoints answer them."""

    case = fields.Nested(CaseOut, required=True)
    number = fields.String(required=True, metadata={"description": "the family's number"})
    problems = fields.List(fields.Nested(FindingOut), required=True)
    strengths = fields.List(fields.Nested(FindingOut), required=True)
    agreements = fields.List(fields.Nested(AgreementOut), required=True)
    measures = fields.List(fields.Nested(MeasureOut), required=True)
    approvals = fields.List(fields.Nested(ApprovalOut), required=True)
    assessments = fields.Nested(AssessmentsOut, required=True)
    contacts = fields.Nested(ContactEntryPage, required=True)
