"""The raids HTTP API, results: visit acts and the raid report (JSON and printable)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint
from sqlalchemy import select

from services.raids import report
from services.raids import visits as visit_acts
from services.raids.api import EVERYONE, OVERSEERS, audit_families, context, readable_raid
from services.raids.domain import get_raid
from services.raids.models import VisitAct, tables
from services.raids.schemas import PageArgs, VisitIn, VisitOut, VisitPage
from shared.auth import audit
from shared.auth.context import current_principal
from shared.auth.policy import require
from shared.auth.roles import COORDINATOR
from shared.errors import Forbidden, NotFound
from shared.http import db_session, idempotent, paginate

visits = Blueprint(
    "visits", __name__, url_prefix="/raids", description="Visit acts and raid reports"
)


# --- visits and the report ---------------------------------------------------------------------


@visits.route("/<raid_id>/visits", methods=["POST"])
@visits.arguments(VisitIn)
@visits.response(201, VisitOut)
@require(*EVERYONE)
@idempotent
def record_visit(data: dict[str, Any], raid_id: str) -> Any:
    """Record a visit act; publishes the visit, its follow-ups and any urgent concern."""
    raid = get_raid(db_session(), raid_id, for_update=True)
    principal = current_principal()
    if not principal.has_role(COORDINATOR) and not any(
        p.person_id == principal.subject and p.state in ("invited", "confirmed")
        for p in raid.participants
    ):
        raise Forbidden("visit acts are recorded by the raid's participants")
    act = visit_acts.record_visit(context(), raid, data)
    audit.record(
        db_session(),
        tables,
        action="create",
        entity="visit_act",
        entity_id=act.id,
        family_id=act.family_id,
        fields=["conditions", "findings", "actions_taken", "urgent_reason", "followups"],
    )
    return act, 201, {"Location": f"/raids/{raid.id}/visits/{act.id}"}


@visits.route("/<raid_id>/visits", methods=["GET"])
@visits.arguments(PageArgs, location="query")
@visits.response(200, VisitPage)
@require(*EVERYONE)
def list_visits(args: dict[str, Any], raid_id: str) -> Any:
    raid = readable_raid(raid_id)
    session = db_session()
    stmt = (
        select(VisitAct)
        .where(VisitAct.raid_id == raid.id)
        .order_by(VisitAct.recorded_at, VisitAct.id)
    )
    page = paginate(session, stmt, page=args["page"], page_size=args["page_size"])
    audit.record_each(
        session,
        tables,
        action=audit.READ,
        entity="visit_act",
        targets=[(act.id, act.family_id) for act in page["items"]],
    )
    return page


@visits.route("/<raid_id>/visits/<visit_id>", methods=["GET"])
@visits.response(200, VisitOut)
@require(*EVERYONE)
def get_visit(raid_id: str, visit_id: str) -> Any:
    raid = readable_raid(raid_id)
    act = next((v for v in raid.visits if v.id == visit_id), None)
    if act is None:
        raise NotFound(f"no visit act {visit_id} on raid {raid_id}")
    audit.record(
        db_session(),
        tables,
        action="read",
        entity="visit_act",
        entity_id=act.id,
        family_id=act.family_id,
    )
    return act


@visits.route("/<raid_id>/report", methods=["GET"])
@visits.response(200, description="The raid report")
@require(*OVERSEERS)
def raid_report(raid_id: str) -> Any:
    """Who took part, families visited, outcomes, follow-ups (JSON)."""
    raid = get_raid(db_session(), raid_id)
    audit_families(raid, "read", ["report"])
    return report.build_report(db_session(), raid)


@visits.route("/<raid_id>/report.html", methods=["GET"])
@visits.response(200, description="The raid report, printable", content_type="text/html")
@require(*OVERSEERS)
def raid_report_html(raid_id: str) -> Any:
    """The same report as a printable document."""
    raid = get_raid(db_session(), raid_id)
    audit_families(raid, "export", ["report"])
    body = report.render_html(report.build_report(db_session(), raid))
    response = Response(body, content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "private, no-store"
    return response
