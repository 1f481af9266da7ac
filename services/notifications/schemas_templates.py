"""HTTP schemas of the templates API: specs, versions, new versions and previews."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

MAX_SOURCE = 20_000  # characters of one template part


def _source(**kwargs: object) -> fields.String:
    return fields.String(validate=validate.Length(max=MAX_SOURCE), **kwargs)  # type: ignore[arg-type]


# --- requests ----------------------------------------------------------------------------------


class VersionIn(Schema):
    """A new version of one (key, channel, language) template; checked before it is stored."""

    subject = _source(
        load_default=None, allow_none=True, metadata={"description": "email only; one line"}
    )
    text = _source(required=True)
    html = _source(load_default=None, allow_none=True, metadata={"description": "email only"})
    note = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=500),
        metadata={"description": "why this version, for the history"},
    )  # fmt: skip
    activate = fields.Boolean(
        load_default=True, metadata={"description": "make it current at once (default)"}
    )


class PreviewIn(Schema):
    """Parts left out come from the current version; the context is laid over the samples."""

    subject = _source(allow_none=True)
    text = _source()
    html = _source(allow_none=True)
    context = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={"description": "placeholder values; undeclared keys are ignored"},
    )


# --- responses ---------------------------------------------------------------------------------


class PlaceholderOut(Schema):
    name = fields.String()
    description = fields.String()
    sample = fields.Raw()
    free_text = fields.Boolean(
        metadata={"description": "typed by people: email bodies only, never subjects or SMS"}
    )


class CurrentOut(Schema):
    channel = fields.String()
    language = fields.String()
    version = fields.Integer(metadata={"description": "0: the built-in default"})


class TemplateKeyOut(Schema):
    key = fields.String()
    description = fields.String()
    channels = fields.List(fields.String())
    placeholders = fields.List(fields.Nested(PlaceholderOut))
    current = fields.List(fields.Nested(CurrentOut))


class VersionOut(Schema):
    key = fields.String()
    channel = fields.String()
    language = fields.String()
    version = fields.Integer()
    subject = fields.String(allow_none=True)
    text = fields.String()
    html = fields.String(allow_none=True)
    active = fields.Boolean()
    note = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime(allow_none=True)


class TemplateOut(Schema):
    key = fields.String()
    channel = fields.String()
    language = fields.String()
    description = fields.String()
    placeholders = fields.List(fields.Nested(PlaceholderOut))
    current_version = fields.Integer(metadata={"description": "0: the built-in default"})
    current = fields.Nested(VersionOut)
    default = fields.Nested(VersionOut, metadata={"description": "the built-in version 0"})
    versions = fields.List(fields.Nested(VersionOut), metadata={"description": "newest first"})


class SmsSegmentsOut(Schema):
    encoding = fields.String(metadata={"example": "UCS-2"})
    parts = fields.Integer()
    length = fields.Integer()


class PreviewOut(Schema):
    key = fields.String()
    channel = fields.String()
    language = fields.String()
    version = fields.Integer(
        allow_none=True, metadata={"description": "the version previewed; null for a draft"}
    )
    subject = fields.String(allow_none=True)
    text = fields.String()
    html = fields.String(allow_none=True)
    length = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "characters per part"},
    )
    sms = fields.Nested(SmsSegmentsOut, allow_none=True)
