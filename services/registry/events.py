"""Events the registry publishes, with their versioned schemas."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from services.registry.models import (
    ASSESSMENT_DOMAINS,
    CATEGORIES,
    MEASURE_STATUSES,
    OUTCOMES,
    STAGES,
    tables,
)
from shared.agencies import AgencyKind
from shared.events import event_schema
from shared.messaging.outbox import add_event


class AddressSchema(Schema):
    region = fields.String(required=True)
    district = fields.String(required=True)
    settlement = fields.String(required=True)
    street = fields.String(allow_none=True, load_default=None)
    house = fields.String(allow_none=True, load_default=None)
    flat = fields.String(allow_none=True, load_default=None)
    latitude = fields.Float(allow_none=True, load_default=None)
    longitude = fields.Float(allow_none=True, load_default=None)


@event_schema("registry.family.registered", 1)
class FamilyRegisteredV1(Schema):
    """A family entered the data bank. Carries what raids needs to plan visits."""

    family_id = fields.String(required=True)
    number = fields.String(required=True)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    address = fields.Nested(AddressSchema, required=True)
    display_name = fields.String(required=True)
    children_count = fields.Integer(required=True, validate=validate.Range(min=0))
    family_version = fields.Integer(required=True)


@event_schema("registry.family.updated", 1)
class FamilyUpdatedV1(Schema):
    """A family's address, members or display name changed. The full snapshot, so read models
    can replace theirs; ``family_version`` orders updates that arrive out of order."""

    family_id = fields.String(required=True)
    number = fields.String(required=True)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    address = fields.Nested(AddressSchema, required=True)
    display_name = fields.String(required=True)
    children_count = fields.Integer(required=True, validate=validate.Range(min=0))
    family_version = fields.Integer(required=True)
    removed = fields.Boolean(load_default=False)


def publish(
    session: Session, name: str, data: dict[str, Any], version: int | None = None
) -> dict[str, Any]:
    return add_event(session, tables, name, data, producer="registry", version=version)


class CaseRefSchema(Schema):
    """Fields every case event carries; ``number`` is the family's registry number."""

    case_id = fields.String(required=True)
    family_id = fields.String(required=True)
    number = fields.String(required=True)
    district = fields.String(required=True)
    lead_specialist = fields.String(required=True, allow_none=True)


@event_schema("registry.family.category_changed", 1)
class FamilyCategoryChangedV1(Schema):
    """A family's category changed (escalation or improvement); the justification stays in the
    registry."""

    family_id = fields.String(required=True)
    number = fields.String(required=True)
    district = fields.String(required=True)
    category_from = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    category_to = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    changed_on = fields.Date(required=True)
    family_version = fields.Integer(required=True)


@event_schema("registry.case.opened", 1)
class CaseOpenedV1(CaseRefSchema):
    """A case opened: a newly registered family's first (after registry.family.registered), a
    re-entry, a second report, an accepted signal."""

    opened_on = fields.Date(required=True)
    reentry = fields.Boolean(required=True)
    source = fields.String(required=True)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))


@event_schema("registry.case.stage_changed", 1)
class CaseStageChangedV1(CaseRefSchema):
    """A case moved between preparatory, support, final and closed."""

    stage_from = fields.String(required=True, validate=validate.OneOf(STAGES))
    stage_to = fields.String(required=True, validate=validate.OneOf(STAGES))
    changed_on = fields.Date(required=True)


@event_schema("registry.case.closed", 1)
class CaseClosedV1(CaseRefSchema):
    """The family left the data bank with this outcome."""

    closed_on = fields.Date(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))
    decision_ref = fields.String(required=True, allow_none=True)
    duration_days = fields.Integer(required=True, validate=validate.Range(min=0))


@event_schema("registry.case.approval_requested", 1)
class CaseApprovalRequestedV1(CaseRefSchema):
    """A lead specialist asks the coordinator to approve the plan or the closing (notify them)."""

    approval_id = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(("plan", "closing")))
    requested_by = fields.String(required=True)


@event_schema("registry.case.approval_decided", 1)
class CaseApprovalDecidedV1(CaseRefSchema):
    """The approver's decision; a refusal's comment is read in the registry, not carried here."""

    approval_id = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(("plan", "closing")))
    decision = fields.String(required=True, validate=validate.OneOf(("approved", "refused")))
    decided_by = fields.String(required=True)


@event_schema("registry.case.lead_assigned", 1)
class CaseLeadAssignedV1(CaseRefSchema):
    """A lead specialist was assigned or the case reassigned."""

    previous_lead_specialist = fields.String(required=True, allow_none=True)
    assigned_by = fields.String(required=True)


@event_schema("registry.agreement.recorded", 1)
class AgreementRecordedV1(Schema):
    """The family's agreement and consents; referrals checks ``share_with`` (agency kinds) before
    sending the family's data to an agency."""

    agreement_id = fields.String(required=True)
    case_id = fields.String(required=True)
    family_id = fields.String(required=True)
    signed_on = fields.Date(required=True)
    valid_until = fields.Date(required=True)
    consent_data_processing = fields.Boolean(required=True)
    # AgencyKind: an agreement from before the one list of kinds may still say "clergy"
    share_with = fields.List(AgencyKind(), required=True)


@event_schema("registry.agreement.withdrawn", 1)
class AgreementWithdrawnV1(AgreementRecordedV1):
    """The family withdrew its agreement: from ``withdrawn_at`` none of its consents holds, and
    no older agreement comes back into force. The whole agreement comes along, so a consumer
    that sees the withdrawal before the recording still knows what ended; ``reason`` is the
    lead specialist's note (no family member's data), for referrals to withdraw open referrals
    with."""

    withdrawn_at = fields.AwareDateTime(required=True, format="iso")
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class MeasureSchema(Schema):
    measure_id = fields.String(required=True)
    case_id = fields.String(required=True)
    family_id = fields.String(required=True)
    number = fields.String(required=True)
    district = fields.String(required=True)
    agency_id = fields.String(required=True, allow_none=True)
    kind = fields.String(required=True)
    title = fields.String(required=True)
    deadline = fields.Date(required=True)
    status = fields.String(required=True, validate=validate.OneOf(MEASURE_STATUSES))
    measure_version = fields.Integer(required=True)


@event_schema("registry.measure.assigned", 1)
class MeasureAssignedV1(MeasureSchema):
    """A plan measure was assigned to another agency: referrals turns it into a referral."""


@event_schema("registry.measure.updated", 1)
class MeasureUpdatedV1(MeasureSchema):
    """A measure's status, deadline or result changed; ``measure_version`` orders updates."""


@event_schema("registry.assessment.recorded", 1)
class AssessmentRecordedV1(Schema):
    """A dated assessment, scores 1-5 per domain, for effectiveness monitoring."""

    assessment_id = fields.String(required=True)
    case_id = fields.String(required=True)
    family_id = fields.String(required=True)
    assessed_on = fields.Date(required=True)
    scores = fields.Dict(
        keys=fields.String(validate=validate.OneOf(ASSESSMENT_DOMAINS)),
        values=fields.Integer(validate=validate.Range(min=1, max=5)),
        required=True,
    )
    average = fields.Float(required=True)


@event_schema("registry.access.emergency_granted", 1)
class EmergencyAccessGrantedV1(Schema):
    """A staff member outside the family's scope broke the glass: tell the district coordinator.
    The stated reason is read in the registry's audit trail."""

    grant_id = fields.String(required=True)
    family_id = fields.String(required=True)
    number = fields.String(required=True)
    district = fields.String(required=True)
    subject = fields.String(required=True)
    agency_id = fields.String(required=True, allow_none=True)
    expires_at = fields.AwareDateTime(required=True, format="iso")
    minutes = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1)
    )  # added with requested durations; older messages lack it


@event_schema("registry.intake.pending", 1)
class IntakePendingV1(Schema):
    """An accepted signal without a family id matched several families (or none confidently):
    a coordinator chooses (GET /intakes/{id}). Counts only, no personal data."""

    intake_id = fields.String(required=True)
    signal_id = fields.String(required=True)
    district = fields.String(required=True)
    candidates = fields.Integer(required=True, validate=validate.Range(min=0))


SIGNAL_REFUSALS = ("family-unknown", "case-refused")


@event_schema("registry.signal.refused", 1)
class SignalRefusedV1(Schema):
    """The registry could not act on an accepted signal (its family is not, or no longer, in the
    registry; the case could not be opened): referrals returns the signal to triage with the
    reason. A code and the signal's ids, no personal data. ``accepted_at`` is the acceptance it
    answers, so a refusal of an earlier acceptance does not undo a later one."""

    signal_id = fields.String(required=True)
    family_id = fields.String(required=True, allow_none=True)
    reason = fields.String(required=True, validate=validate.OneOf(SIGNAL_REFUSALS))
    detail = fields.String(required=True)
    accepted_at = fields.AwareDateTime(required=True)
