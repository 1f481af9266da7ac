"""HTTP request and response schemas of the registry: families (cases and plans are in
``schemas_cases``)."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.registry import name_search
from services.registry.domain_search import RELEVANCE, SORTS
from services.registry.models import (
    ADDRESS_FIELDS,
    CATEGORIES,
    CONTACT_KINDS,
    MEMBER_ROLES,
    STAGES,
)
from shared.db import utcnow
from shared.http import PageArgs

PHONE = re.compile(r"^\+?[0-9 ()\-]{5,24}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SORT_CHOICES = [RELEVANCE, *SORTS, *(f"-{key}" for key in SORTS)]


class AddressIn(Schema):
    region = fields.String(required=True, validate=validate.Length(min=1, max=120))
    district = fields.String(required=True, validate=validate.Length(min=1, max=120))
    settlement = fields.String(required=True, validate=validate.Length(min=1, max=120))
    street = fields.String(load_default=None, validate=validate.Length(max=200))
    house = fields.String(load_default=None, validate=validate.Length(max=20))
    flat = fields.String(load_default=None, validate=validate.Length(max=20))
    latitude = fields.Float(load_default=None, validate=validate.Range(min=-90, max=90))
    longitude = fields.Float(load_default=None, validate=validate.Range(min=-180, max=180))


class MemberIn(Schema):
    id = fields.String(load_default=None, metadata={"description": "keep a member's identity"})
    role = fields.String(required=True, validate=validate.OneOf(MEMBER_ROLES))
    full_name = fields.String(
        required=True,
        validate=validate.Length(min=2, max=300),
        metadata={"description": "surname first: Фамилия Имя Отчество"},
    )
    birth_date = fields.Date(load_default=None)
    school = fields.String(
        load_default=None,
        validate=validate.Length(max=200),
        metadata={"description": "school or kindergarten, children only"},
    )
    school_class = fields.String(load_default=None, validate=validate.Length(max=20))
    former_surnames = fields.List(
        fields.String(validate=validate.Length(min=1, max=100)),
        load_default=None,
        validate=validate.Length(max=5),
    )


class ContactIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(CONTACT_KINDS))
    value = fields.String(required=True, validate=validate.Length(min=3, max=200))
    owner = fields.String(load_default=None, validate=validate.Length(max=200))
    consent = fields.Boolean(
        load_default=False,
        metadata={"description": "the family agreed to be notified by SMS/email here"},
    )
    consent_on = fields.Date(load_default=None)

    @validates_schema
    def _value(self, data: dict[str, Any], **_: Any) -> None:
        pattern = PHONE if data["kind"] == "phone" else EMAIL
        if not pattern.match(data["value"]):
            raise ValidationError(f"not a valid {data['kind']}", field_name="value")
        if data.get("consent") and data.get("consent_on") is None:
            raise ValidationError("the date the consent was given", field_name="consent_on")


class FamilyIn(Schema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    category_justification = fields.String(load_default=None, validate=validate.Length(max=2000))
    address = fields.Nested(AddressIn, required=True)
    distance_km = fields.Float(
        load_default=None,
        validate=validate.Range(min=0, max=5000),
        metadata={"description": "distance to the district centre"},
    )
    members = fields.List(
        fields.Nested(MemberIn), required=True, validate=validate.Length(min=1, max=30)
    )
    contacts = fields.List(
        fields.Nested(ContactIn), load_default=list, validate=validate.Length(max=20)
    )
    notes = fields.String(load_default=None, validate=validate.Length(max=4000))
    social_environment = fields.String(load_default=None, validate=validate.Length(max=4000))
    lead_specialist = fields.String(load_default=None, validate=validate.Length(max=120))
    reported_by_agency = fields.String(load_default=None, validate=validate.Length(max=64))
    link_to = fields.String(
        load_default=None,
        metadata={"description": "coordinator: add this report to an existing family instead"},
    )


class FamilyPatch(Schema):
    address = fields.Nested(AddressIn)
    moved_on = fields.Date(
        metadata={"description": "with a new address: the day the family moved (default today)"}
    )
    distance_km = fields.Float(allow_none=True, validate=validate.Range(min=0, max=5000))
    members = fields.List(fields.Nested(MemberIn), validate=validate.Length(min=1, max=30))
    contacts = fields.List(fields.Nested(ContactIn), validate=validate.Length(max=20))
    notes = fields.String(allow_none=True, validate=validate.Length(max=4000))
    social_environment = fields.String(allow_none=True, validate=validate.Length(max=4000))


class MemberOut(Schema):
    id = fields.String()
    role = fields.String()
    full_name = fields.String()
    birth_date = fields.Date(allow_none=True)
    school = fields.String(allow_none=True)
    school_class = fields.String(allow_none=True)
    former_surnames = fields.List(fields.String(), allow_none=True)


class ContactOut(Schema):
    kind = fields.String()
    value = fields.String()
    owner = fields.String(allow_none=True)
    consent = fields.Boolean()
    consent_on = fields.Date(allow_none=True)


def _address(family: Any) -> dict[str, object]:
    return {key: getattr(family, key) for key in ADDRESS_FIELDS}


class MemberMatchOut(Schema):
    member = fields.Integer(metadata={"description": "index in the reported members"})
    matched_member_id = fields.String()
    similarity = fields.Float()
    birth_date = fields.Boolean()
    surname_changed = fields.Boolean()


class CandidateOut(Schema):
    family_id = fields.String()
    number = fields.String()
    score = fields.Float()
    matched_fields = fields.List(fields.String())
    members = fields.List(fields.Nested(MemberMatchOut))


class FamilyOut(Schema):
    id = fields.String()
    number = fields.String()
    category = fields.String()
    display_name = fields.String()
    address = fields.Function(_address)
    distance_km = fields.Float(allow_none=True)
    members = fields.List(fields.Nested(MemberOut))
    contacts = fields.List(fields.Nested(ContactOut))
    notes = fields.String(allow_none=True)
    social_environment = fields.String(allow_none=True)
    in_bank = fields.Boolean()
    stage = fields.String(allow_none=True)
    lead_specialist = fields.String(allow_none=True)
    reported_by_agency = fields.String(allow_none=True)
    missing_fields = fields.List(
        fields.String(),
        allow_none=True,
        metadata={"description": "registered from a signal: what the coordinator must complete"},
    )
    version = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    duplicate_candidates = fields.List(
        fields.Nested(CandidateOut),
        metadata={"description": "on registration: families this one may duplicate"},
    )
    access = fields.String(metadata={"description": "full, agency or emergency"})


class AgencyMemberOut(Schema):
    role = fields.String()
    full_name = fields.String()
    birth_date = fields.Date(allow_none=True)
    school = fields.String(allow_none=True)
    school_class = fields.String(allow_none=True)


class AgencyMeasureOut(Schema):
    id = fields.String()
    title = fields.String()
    kind = fields.String()
    deadline = fields.Date()
    status = fields.String()
    result_note = fields.String(allow_none=True)


class FamilyAgencyOut(Schema):
    """What an agency's staff need for the work referred to them, and no more."""

    id = fields.String()
    number = fields.String()
    category = fields.String()
    address = fields.Dict()
    members = fields.List(fields.Nested(AgencyMemberOut))
    stage = fields.String(allow_none=True)
    measures = fields.List(fields.Nested(AgencyMeasureOut))
    contacts = fields.List(fields.Nested(ContactOut))
    lead_specialist = fields.String(allow_none=True)
    access = fields.String()
    access_expires_at = fields.DateTime()


class FamilySummaryOut(Schema):
    id = fields.String()
    number = fields.String()
    display_name = fields.String()
    category = fields.String()
    region = fields.String()
    district = fields.String()
    settlement = fields.String()
    in_bank = fields.Boolean()
    stage = fields.String(allow_none=True)
    lead_specialist = fields.String(allow_none=True)
    created_at = fields.DateTime()


def _search_text(text: str) -> None:
    try:
        name_search.parse(text)
    except ValueError as error:
        raise ValidationError("a date is dd.mm.yyyy or yyyy-mm-dd and must exist") from error


class FamilyFilterArgs(Schema):
    """The data bank's filters and search, shared by the list and its export."""

    region = fields.String()
    district = fields.String()
    settlement = fields.String()
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    stage = fields.String(validate=validate.OneOf(STAGES))
    lead_specialist = fields.String()
    in_bank = fields.Boolean(
        metadata={"description": "true: in the data bank; false: removed from it"}
    )
    overdue = fields.Boolean(metadata={"description": "only families with overdue measures"})
    incomplete = fields.Boolean(
        metadata={"description": "only families registered from a signal and not yet completed"}
    )
    q = fields.String(
        validate=[validate.Length(min=2, max=200), _search_text],
        metadata={
            "description": "any member's name, children included, in Cyrillic or Latin, "
            "typos tolerated (each word the start of a name word), and birth dates "
            "(dd.mm.yyyy or yyyy-mm-dd); all words must match"
        },
    )
    birth_date = fields.Date(metadata={"description": "a member of the family was born that day"})
    surname = fields.String(
        validate=validate.Length(min=2, max=100),
        metadata={"description": "older name of `q`: searched the same way"},
    )
    sort = fields.String(
        load_default=None,
        validate=validate.OneOf(SORT_CHOICES),
        metadata={"description": "default: `relevance` with a name in `q`, else `-created_at`"},
    )


class FamilyListArgs(PageArgs, FamilyFilterArgs):
    pass


EXPORT_FORMATS = ("csv", "xlsx")


class FamilyExportArgs(FamilyFilterArgs):
    format = fields.String(load_default="csv", validate=validate.OneOf(EXPORT_FORMATS))


class CategoryChangeIn(Schema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    justification = fields.String(required=True, validate=validate.Length(min=3, max=4000))
    changed_on = fields.Date(load_default=None)


class CategoryChangeOut(Schema):
    id = fields.String()
    category_from = fields.String(allow_none=True)
    category_to = fields.String()
    changed_on = fields.Date()
    justification = fields.String()
    changed_by = fields.String()
    recorded_at = fields.DateTime()


class LinkIn(Schema):
    duplicate_id = fields.String(
        required=True, metadata={"description": "the record to fold into this family"}
    )


class LinkOut(Schema):
    id = fields.String()
    family_id = fields.String()
    merged_family_id = fields.String(allow_none=True)
    members_added = fields.Integer()
    score = fields.Float(allow_none=True)
    linked_by = fields.String()
    linked_at = fields.DateTime()


class DuplicateCheckIn(Schema):
    address = fields.Nested(AddressIn, required=True)
    members = fields.List(
        fields.Nested(MemberIn), required=True, validate=validate.Length(min=1, max=30)
    )


class CandidateList(Schema):
    candidates = fields.List(fields.Nested(CandidateOut))


class GlassIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(max=2000))
    minutes = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1),
        metadata={
            "description": "how long the access lasts (default 30; at most "
            "REGISTRY_BREAK_GLASS_MAX_MINUTES, default 120)"
        },
    )


class GlassOut(Schema):
    id = fields.String()
    family_id = fields.String()
    granted_at = fields.DateTime()
    expires_at = fields.DateTime()
    minutes = fields.Integer(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    ended_by = fields.String(allow_none=True)


class GlassLimitsOut(Schema):
    default_minutes = fields.Integer()
    max_minutes = fields.Integer(metadata={"description": "REGISTRY_BREAK_GLASS_MAX_MINUTES"})


class GlassGrantOut(GlassOut):
    """A grant as the coordinator reviews it: who, for which family, why, and whether in force."""

    number = fields.Function(lambda grant: grant.family.number)
    district = fields.Function(lambda grant: grant.family.district)
    subject = fields.String()
    agency_id = fields.String(allow_none=True)
    reason = fields.String()
    active = fields.Function(lambda grant: grant.ended_at is None and grant.expires_at > utcnow())


class GlassArgs(PageArgs):
    active = fields.Boolean(metadata={"description": "true: in force now; false: ended or expired"})
    since = fields.AwareDateTime(metadata={"description": "granted at or after"})
    district = fields.String()
    family_id = fields.String()


class AddressHistoryOut(Schema):
    valid_from = fields.Date()
    region = fields.String()
    district = fields.String()
    settlement = fields.String()
    street = fields.String(allow_none=True)
    house = fields.String(allow_none=True)
    flat = fields.String(allow_none=True)
    recorded_by = fields.String(allow_none=True)
    recorded_at = fields.DateTime()


class FamilyPage(Schema):
    """A page of the family list; past 1000 matches the count stops (``total_exact`` false)."""

    items = fields.List(fields.Nested(FamilySummaryOut), required=True)
    page = fields.Integer(required=True)
    page_size = fields.Integer(required=True)
    total = fields.Integer(required=True)
    total_exact = fields.Boolean(required=True)
    pages = fields.Integer(required=True)
