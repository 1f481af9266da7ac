"""HTTP request and response schemas of the registry."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.registry.models import ADDRESS_FIELDS, CATEGORIES, MEMBER_ROLES
from shared.http import PageArgs, page_schema


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
    role = fields.String(required=True, validate=validate.OneOf(MEMBER_ROLES))
    full_name = fields.String(required=True, validate=validate.Length(min=2, max=300))
    birth_date = fields.Date(load_default=None)
    school = fields.String(load_default=None, validate=validate.Length(max=200))


class FamilyIn(Schema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    address = fields.Nested(AddressIn, required=True)
    members = fields.List(
        fields.Nested(MemberIn), required=True, validate=validate.Length(min=1, max=30)
    )
    notes = fields.String(load_default=None, validate=validate.Length(max=4000))


class MemberOut(Schema):
    id = fields.String()
    role = fields.String()
    full_name = fields.String()
    birth_date = fields.Date(allow_none=True)
    school = fields.String(allow_none=True)


class FamilyOut(Schema):
    id = fields.String()
    number = fields.String()
    category = fields.String()
    address = fields.Method("_address")
    members = fields.List(fields.Nested(MemberOut))
    notes = fields.String(allow_none=True)
    version = fields.Integer()
    created_at = fields.DateTime()

    def _address(self, family: object) -> dict[str, object]:
        return {key: getattr(family, key) for key in ADDRESS_FIELDS}


class FamilySummaryOut(Schema):
    id = fields.String()
    number = fields.String()
    category = fields.String()
    district = fields.String()
    settlement = fields.String()


class FamilyListArgs(PageArgs):
    district = fields.String()
    category = fields.String(validate=validate.OneOf(CATEGORIES))


FamilyPage = page_schema(FamilySummaryOut)
