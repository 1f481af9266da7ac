"""The registry's HTTP API for emergency access ("break the glass") and a family's address
history: a thin adapter over ``access`` and ``addresses``."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy.orm import selectinload

from services.registry import access, addresses, domain
from services.registry.api import CASEWORK, record, record_list
from services.registry.models import Family, GlassBreak
from services.registry.schemas import (
    AddressHistoryOut,
    GlassArgs,
    GlassGrantOut,
    GlassIn,
    GlassLimitsOut,
    GlassOut,
)
from shared.auth import audit
from shared.auth.policy import require
from shared.auth.roles import AGENCY_STAFF, COORDINATOR
from shared.http import db_session, idempotent, opora_app, page_schema, paginate

emergency = Blueprint(
    "emergency", __name__, url_prefix="", description="Break-the-glass access, address history"
)


@emergency.route("/families/<family_id>/break-glass", methods=["POST"])
@emergency.arguments(GlassIn)
@emergency.response(201, GlassOut)
@require(AGENCY_STAFF)
@idempotent
def break_glass(data: dict[str, Any], family_id: str) -> Any:
    """Emergency access outside one's scope for `minutes` (default 30, at most the configured
    maximum); the reason is required and the coordinator is notified."""
    session = db_session()
    family = domain.get_family(session, family_id)
    grant = access.break_glass(
        session,
        family,
        data["reason"],
        data.get("minutes"),
        max_minutes=access.glass_max_minutes(opora_app().settings.options),
    )
    record(audit.BREAK_GLASS, "family", family.id, family.id, reason=grant.reason)
    return grant


def _end(family_id: str, grant_id: str) -> GlassBreak:
    session = db_session()
    grant = access.get_grant(session, grant_id, family_id)
    if access.end_glass(session, grant):
        record("update", "glass_break", grant.id, family_id, fields=["ended_at"])
    return grant


@emergency.route("/families/<family_id>/break-glass/<grant_id>/end", methods=["POST"])
@emergency.response(200, GlassOut)
@require(AGENCY_STAFF, COORDINATOR)
@idempotent
def end_glass(family_id: str, grant_id: str) -> Any:
    """The grantee or a coordinator ends the access before it expires (again: no change)."""
    return _end(family_id, grant_id)


@emergency.route("/families/<family_id>/break-glass/<grant_id>", methods=["DELETE"])
@emergency.response(204)
@require(AGENCY_STAFF, COORDINATOR)
@idempotent
def delete_glass(family_id: str, grant_id: str) -> Any:
    """The same as `POST .../end`: the record of the grant stays, its access ends."""
    _end(family_id, grant_id)
    return None


@emergency.route("/break-glass", methods=["GET"])
@emergency.arguments(GlassArgs, location="query")
@emergency.response(200, page_schema(GlassGrantOut))
@require(COORDINATOR, AGENCY_STAFF)
def list_grants(args: dict[str, Any]) -> Any:
    """Emergency accesses, newest first: `active=true` those in force, `since` the recent ones,
    by district or family. A coordinator sees everyone's; agency staff their own (the console
    shows a banner while one lasts)."""
    stmt = access.grants(
        active=args.get("active"), since=args.get("since"), subject=access.grants_scope()
    )
    if args.get("district"):
        stmt = stmt.join(Family, Family.id == GlassBreak.family_id).where(
            Family.district == args["district"]
        )
    if args.get("family_id"):
        stmt = stmt.where(GlassBreak.family_id == args["family_id"])
    stmt = stmt.options(selectinload(GlassBreak.family))
    page = paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])
    record_list(
        "list",
        "glass_break",
        [g.family_id for g in page["items"]],
        fields=["subject", "reason", "number"],
    )
    return page


@emergency.route("/break-glass/limits", methods=["GET"])
@emergency.response(200, GlassLimitsOut)
@require(AGENCY_STAFF, COORDINATOR)
def glass_limits() -> Any:
    """How long an emergency access lasts when none is asked for, and at most (a form shows
    them before anyone is refused)."""
    return {
        "default_minutes": access.GLASS_MINUTES,
        "max_minutes": access.glass_max_minutes(opora_app().settings.options),
    }


@emergency.route("/families/<family_id>/addresses", methods=["GET"])
@emergency.response(200, AddressHistoryOut(many=True))
@require(*CASEWORK)
def address_history(family_id: str) -> Any:
    """Where the family lived and from when, oldest first (statistics count by it)."""
    session = db_session()
    domain.get_family(session, family_id)
    record("read", "family", family_id, family_id, fields=["address_history"])
    return addresses.history(session, family_id)
