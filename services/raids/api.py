"""The raids HTTP API."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from services.raids.models import KnownFamily, tables
from services.raids.schemas import KnownFamilyArgs, KnownFamilyPage
from shared.auth import audit
from shared.auth.policy import require
from shared.auth.roles import ADMIN, COORDINATOR, LEAD_SPECIALIST
from shared.http import db_session, paginate

families = Blueprint(
    "families", __name__, url_prefix="/families", description="Families known to raids"
)


@families.route("", methods=["GET"])
@families.arguments(KnownFamilyArgs, location="query")
@families.response(200, KnownFamilyPage)
@require(COORDINATOR, LEAD_SPECIALIST, ADMIN)
def list_known_families(args: dict[str, Any]) -> Any:
    """Families that can be put on a raid, as learned from the registry."""
    session = db_session()
    stmt = select(KnownFamily).order_by(KnownFamily.district, KnownFamily.number)
    if args.get("district"):
        stmt = stmt.where(KnownFamily.district == args["district"])
    page = paginate(session, stmt, page=args["page"], page_size=args["page_size"])
    audit.record(
        session,
        tables,
        action="list",
        entity="known_family",
        entity_id=None,
        fields=["display_name"],
    )
    return page
