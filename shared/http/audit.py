"""``GET /audit``, the same in every service: who read or changed which family's data, when and
why, newest first, for admins and auditors. The trail is append-only, so the route reads and
nothing in the API writes it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from shared.auth.audit import AuditFilter, audit_query
from shared.auth.policy import require
from shared.auth.roles import ADMIN, AUDITOR
from shared.http.app import db_session, opora_app
from shared.http.pagination import PageArgs, page_schema, paginate

AUDIT_READERS = (ADMIN, AUDITOR)


def _text(longest: int, description: str) -> ma.fields.String:
    return ma.fields.String(
        validate=ma.validate.Length(min=1, max=longest), metadata={"description": description}
    )


class AuditArgs(PageArgs):
    family_id = _text(64, "entries about this family")
    actor = _text(120, "entries of this actor: a token's subject, `apikey:<id>`, `link:<agency>`")
    action = _text(20, "read, list, search, create, update, delete, export, denied, ...")
    entity = _text(60, "the kind of record: family, case, referral, raid, message, ...")
    entity_id = _text(64, "entries about this record")
    correlation_id = _text(64, "entries written by the request with this X-Correlation-ID")
    since = ma.fields.AwareDateTime(
        data_key="from", metadata={"description": "entries at or after this time"}
    )
    until = ma.fields.AwareDateTime(
        data_key="to", metadata={"description": "entries before this time"}
    )

    @ma.post_load
    def _in_utc(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """The stored times are UTC; a time that has none (year 1 or 9999 shifted across
        midnight) is refused naming its field, not a server error."""
        for name, key in (("since", "from"), ("until", "to")):
            if data.get(name) is not None:
                try:
                    data[name] = data[name].astimezone(dt.UTC)
                except OverflowError:
                    raise ma.ValidationError("out of range in UTC", key) from None
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ma.ValidationError("must be later than `from`", "to")
        return data


class AuditOut(ma.Schema):
    id = ma.fields.Integer(required=True)
    at = ma.fields.AwareDateTime(required=True)
    actor = ma.fields.String(required=True)
    actor_agency = ma.fields.String(required=True, allow_none=True)
    actor_roles = ma.fields.List(ma.fields.String(), required=True)
    action = ma.fields.String(required=True)
    entity = ma.fields.String(required=True)
    entity_id = ma.fields.String(required=True, allow_none=True)
    family_id = ma.fields.String(required=True, allow_none=True)
    fields_ = ma.fields.List(
        ma.fields.String(),
        data_key="fields",
        attribute="fields",
        required=True,
        allow_none=True,
        metadata={"description": "names of the fields read or changed, never their values"},
    )
    reason = ma.fields.String(required=True, allow_none=True)
    correlation_id = ma.fields.String(required=True, allow_none=True)


AuditPage = page_schema(AuditOut)


def audit_blueprint() -> Blueprint:
    """A fresh blueprint for each app: every service registers it (shared.http.app)."""
    blueprint = Blueprint(
        "audit", __name__, url_prefix="", description="The audit trail (read-only)"
    )

    @blueprint.route("/audit", methods=["GET"])
    @blueprint.arguments(AuditArgs, location="query")
    @blueprint.response(200, AuditPage)
    @require(*AUDIT_READERS)
    def audit_trail(args: dict[str, Any]) -> Any:
        """Who read or changed what in this service, newest first; nobody can edit it. A list
        or search answer has one entry for each family that appeared in it."""
        filters = AuditFilter(**{k: v for k, v in args.items() if k not in ("page", "page_size")})
        stmt = audit_query(opora_app().tables, filters)
        return paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])

    return blueprint
