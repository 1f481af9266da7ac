"""HTTP schemas of intakes: accepted signals without a family id that wait for, or got, a
coordinator's choice among the families duplicate detection found."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.registry.models import INTAKE_STATES
from shared.http import PageArgs


class IntakeCandidateOut(Schema):
    family_id = fields.String()
    number = fields.String()
    score = fields.Float()
    matched_fields = fields.List(fields.String())


class IntakeSummaryOut(Schema):
    id = fields.String()
    signal_id = fields.String()
    district = fields.String()
    priority = fields.String(allow_none=True)
    reporter_agency_id = fields.String(allow_none=True)
    state = fields.String()
    candidates_count = fields.Function(lambda intake: len(intake.candidates or []))
    family_id = fields.String(allow_none=True)
    case_id = fields.String(allow_none=True)
    created_at = fields.DateTime()


class IntakeOut(IntakeSummaryOut):
    """The family as the reporter knew it, the candidates with scores, and the outcome."""

    known = fields.Dict(metadata={"description": "the family as the signal described it"})
    candidates = fields.List(fields.Nested(IntakeCandidateOut))
    accepted_by = fields.String()
    accepted_at = fields.DateTime()
    resolution = fields.String(allow_none=True, metadata={"description": "automatic, coordinator"})
    resolved_by = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)


class IntakeArgs(PageArgs):
    district = fields.String()
    state = fields.String(
        load_default=None,
        validate=validate.OneOf(INTAKE_STATES),
        metadata={"description": "default: pending, or any state with signal_id"},
    )
    signal_id = fields.String(
        validate=validate.Length(min=1, max=36),
        metadata={"description": "the intake of this accepted signal, whatever its state"},
    )


class IntakeResolveIn(Schema):
    family_id = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=36),
        metadata={"description": "attach"},
    )
    register = fields.Boolean(load_default=False, metadata={"description": "register a new family"})

    @validates_schema
    def _one_choice(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("family_id")) == bool(data.get("register")):
            raise ValidationError("give family_id, or register: true (one of them)", "family_id")
