"""The registry's HTTP API for intakes: accepted signals without a family id that duplicate
detection could not settle alone. A coordinator reads the candidates and chooses."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from services.registry import intake
from services.registry.api import record, record_list
from services.registry.models import Intake
from services.registry.schemas_intake import (
    IntakeArgs,
    IntakeOut,
    IntakeResolveIn,
    IntakeSummaryOut,
)
from shared.auth.context import current_principal
from shared.auth.policy import require
from shared.auth.roles import COORDINATOR
from shared.http import db_session, idempotent, page_schema, paginate

intakes = Blueprint(
    "intakes", __name__, url_prefix="/intakes", description="Accepted signals to match to a family"
)


@intakes.route("", methods=["GET"])
@intakes.arguments(IntakeArgs, location="query")
@intakes.response(200, page_schema(IntakeSummaryOut))
@require(COORDINATOR)
def list_intakes(args: dict[str, Any]) -> Any:
    """Intakes of a district (`district`), pending by default (`state`), oldest first; or the
    intake of one accepted signal (`signal_id`), whatever became of it."""
    stmt = select(Intake)
    state = args.get("state") or (None if args.get("signal_id") else "pending")
    if state:
        stmt = stmt.where(Intake.state == state)
    if args.get("signal_id"):
        stmt = stmt.where(Intake.signal_id == args["signal_id"])
    if args.get("district"):
        stmt = stmt.where(Intake.district == args["district"])
    stmt = stmt.order_by(Intake.created_at, Intake.id)
    page = paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])
    record_list(
        "list",
        "intake",
        [i.family_id for i in page["items"]],
        fields=["district", "state", "candidates_count"],
    )
    return page


@intakes.route("/<intake_id>", methods=["GET"])
@intakes.response(200, IntakeOut)
@require(COORDINATOR)
def get_intake(intake_id: str) -> Any:
    """The family as the signal described it and the candidates, with scores and the fields
    that matched."""
    found = intake.get_intake(db_session(), intake_id)
    record("read", "intake", found.id, found.family_id, fields=["known", "candidates"])
    candidates = [c.get("family_id") for c in found.candidates or []]
    if candidates:
        record_list("search", "family", [str(c) for c in candidates if c], fields=["candidates"])
    return found


@intakes.route("/<intake_id>/resolve", methods=["POST"])
@intakes.arguments(IntakeResolveIn)
@intakes.response(200, IntakeOut)
@require(COORDINATOR)
@idempotent
def resolve_intake(data: dict[str, Any], intake_id: str) -> Any:
    """`{"family_id": ...}` attaches the signal to that family (its open case, or a new one in
    preparatory); `{"register": true}` registers the family as the signal knows it."""
    session = db_session()
    found = intake.get_intake(session, intake_id)
    intake.resolve(
        session,
        found,
        family_id=data.get("family_id"),
        register=data["register"],
        by=current_principal().subject,
    )
    record("update", "intake", found.id, found.family_id, fields=["state", "family_id"])
    if found.state == "registered":
        record("create", "family", found.family_id, found.family_id, reason=f"intake {found.id}")
    else:
        record("update", "case", found.case_id, found.family_id, fields=["contact_log"])
    return found
