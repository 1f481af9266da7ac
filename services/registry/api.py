"""The registry's HTTP API: a thin adapter over domain.py."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from services.registry import domain
from services.registry.models import Family, tables
from services.registry.schemas import FamilyIn, FamilyListArgs, FamilyOut, FamilyPage
from shared.auth import audit
from shared.auth.policy import require
from shared.auth.roles import ADMIN, COORDINATOR, LEAD_SPECIALIST
from shared.errors import NotFound
from shared.http import db_session, idempotent, paginate

families = Blueprint(
    "families", __name__, url_prefix="/families", description="The data bank of families"
)

CASEWORK = (LEAD_SPECIALIST, COORDINATOR, ADMIN)


@families.route("", methods=["POST"])
@families.arguments(FamilyIn)
@families.response(201, FamilyOut)
@require(LEAD_SPECIALIST, COORDINATOR)
@idempotent
def register_family(data: dict[str, Any]) -> Any:
    """Enter a family in the data bank."""
    session = db_session()
    family = domain.register_family(session, data)
    audit.record(
        session, tables, action="create", entity="family", entity_id=family.id, family_id=family.id
    )
    return family, 201, {"Location": f"/families/{family.id}"}


@families.route("", methods=["GET"])
@families.arguments(FamilyListArgs, location="query")
@families.response(200, FamilyPage)
@require(*CASEWORK)
def list_families(args: dict[str, Any]) -> Any:
    session = db_session()
    stmt = select(Family).order_by(Family.created_at.desc(), Family.id)
    if args.get("district"):
        stmt = stmt.where(Family.district == args["district"])
    if args.get("category"):
        stmt = stmt.where(Family.category == args["category"])
    page = paginate(session, stmt, page=args["page"], page_size=args["page_size"])
    audit.record(
        session,
        tables,
        action="list",
        entity="family",
        entity_id=None,
        fields=["number", "district"],
    )
    return page


@families.route("/<family_id>", methods=["GET"])
@families.response(200, FamilyOut)
@require(*CASEWORK)
def get_family(family_id: str) -> Any:
    session = db_session()
    family = session.get(Family, family_id)
    if family is None:
        raise NotFound(f"no family {family_id}")
    audit.record(
        session, tables, action="read", entity="family", entity_id=family.id, family_id=family.id
    )
    return family
