"""HTTP schemas of the raids service."""

from marshmallow import Schema, fields

from shared.http import PageArgs, page_schema


class KnownFamilyOut(Schema):
    family_id = fields.String()
    number = fields.String()
    category = fields.String()
    district = fields.String()
    settlement = fields.String()
    display_name = fields.String()
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)


class KnownFamilyArgs(PageArgs):
    district = fields.String()


KnownFamilyPage = page_schema(KnownFamilyOut)
