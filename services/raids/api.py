"""The raids HTTP API: a thin adapter over the domain modules. Coordinators schedule, change
and cancel; participants answer their own invitations and record visits; lead specialists
read. Every read or write of families' personal data is audited."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response
from flask_smorest import Blueprint
from sqlalchemy import select

from services.raids import invitations, scheduling
from services.raids.domain import Context, RaidRules, get_participant, get_raid
from services.raids.models import (
    KnownFamily,
    Participant,
    Raid,
    tables,
)
from services.raids.presenters import FAMILY_FIELDS, raid_detail, raid_summary
from services.raids.schemas import (
    CompleteIn,
    DeclineIn,
    KnownFamilyArgs,
    KnownFamilyPage,
    ParticipantIn,
    ParticipantOut,
    RaidIn,
    RaidListArgs,
    RaidOut,
    RaidPage,
    RaidPatch,
    ReasonIn,
    RouteIn,
    RouteOut,
)
from shared.auth import audit
from shared.auth.context import current_principal
from shared.auth.policy import require
from shared.auth.roles import ADMIN, AGENCY_STAFF, COORDINATOR, LEAD_SPECIALIST
from shared.errors import Forbidden, NotFound
from shared.http import db_session, idempotent, opora_app, paginate

families = Blueprint(
    "families", __name__, url_prefix="/families", description="Families known to raids"
)
raids = Blueprint("raids", __name__, url_prefix="/raids", description="Joint interagency raids")

OVERSEERS = (COORDINATOR, LEAD_SPECIALIST, ADMIN)
EVERYONE = (*OVERSEERS, AGENCY_STAFF)
ICS_TYPE = "text/calendar; charset=utf-8"


# --- helpers -----------------------------------------------------------------------------------


def context() -> Context:
    return Context(
        db_session(),
        current_principal().subject,
        RaidRules.from_env(opora_app().settings.options),
        opora_app().settings.public_url,
    )


def detail(raid: Raid, warnings: list[str] | None = None) -> dict[str, Any]:
    state = opora_app()
    return raid_detail(
        db_session(),
        raid,
        RaidRules.from_env(state.settings.options),
        state.settings.public_url,
        warnings,
    )


def audit_families(raid: Raid, action: str, fields: list[str] = FAMILY_FIELDS) -> None:
    """One entry per family on the raid, in one INSERT."""
    audit.record_each(
        db_session(),
        tables,
        action=action,
        entity="raid",
        targets=[(raid.id, stop.family_id) for stop in raid.stops],
        fields=fields,
    )


def _is_on(raid: Raid, person_id: str) -> bool:
    return any(p.person_id == person_id and p.state != "withdrawn" for p in raid.participants)


def readable_raid(raid_id: str, *, for_update: bool = False) -> Raid:
    """Overseers read every raid; agency staff only those they take part in."""
    raid = get_raid(db_session(), raid_id, for_update=for_update)
    principal = current_principal()
    if not principal.has_role(*OVERSEERS) and not _is_on(raid, principal.subject):
        raise Forbidden("only the raid's participants, coordinators and lead specialists see it")
    return raid


def _own(participant: Participant) -> None:
    principal = current_principal()
    if principal.subject != participant.person_id and not principal.has_role(COORDINATOR):
        raise Forbidden("a participant answers their own invitation")


def self_or(person_id: str, *roles: str) -> None:
    principal = current_principal()
    if principal.subject != person_id and not principal.has_role(*roles):
        raise Forbidden("this is another person's")


def calendar_response(text: str, filename: str) -> Response:
    response = Response(text, content_type=ICS_TYPE)
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-cache"
    return response


# --- families ----------------------------------------------------------------------------------


@families.route("", methods=["GET"])
@families.arguments(KnownFamilyArgs, location="query")
@families.response(200, KnownFamilyPage)
@require(*OVERSEERS)
def list_known_families(args: dict[str, Any]) -> Any:
    """Families that can be put on a raid, as learned from the registry."""
    session = db_session()
    stmt = (
        select(KnownFamily)
        .where(KnownFamily.removed.is_(False))
        .order_by(KnownFamily.district, KnownFamily.settlement, KnownFamily.number)
    )
    for name in ("district", "settlement", "category"):
        if args.get(name):
            stmt = stmt.where(getattr(KnownFamily, name) == args[name])
    page = paginate(session, stmt, page=args["page"], page_size=args["page_size"])
    audit.record_families(
        session,
        tables,
        action=audit.LIST,
        entity="known_family",
        family_ids=[f.family_id for f in page["items"]],
        fields=["display_name", "settlement", "latitude", "longitude"],
    )
    return page


# --- raids -------------------------------------------------------------------------------------


@raids.route("", methods=["POST"])
@raids.arguments(RaidIn)
@raids.response(201, RaidOut)
@require(COORDINATOR)
@idempotent
def schedule_raid(data: dict[str, Any]) -> Any:
    """Schedule a raid: its families, its team (invited at once), its visit order."""
    data["organizer_email"] = data.get("organizer_email") or opora_app().settings.smtp.sender
    data["organizer_name"] = data.get("organizer_name") or current_principal().name
    raid, warnings = scheduling.schedule_raid(context(), data)
    audit_families(raid, "create")
    return detail(raid, warnings), 201, {"Location": f"/raids/{raid.id}"}


@raids.route("", methods=["GET"])
@raids.arguments(RaidListArgs, location="query")
@raids.response(200, RaidPage)
@require(*EVERYONE)
def list_raids(args: dict[str, Any]) -> Any:
    """Raids by date; agency staff see the raids they take part in."""
    principal = current_principal()
    person_id = args.get("person_id")
    if not principal.has_role(*OVERSEERS):
        person_id = principal.subject
    stmt = select(Raid).order_by(Raid.starts_at, Raid.id)
    for name in ("status", "district", "series_id"):
        if args.get(name):
            stmt = stmt.where(getattr(Raid, name) == args[name])
    if person_id:
        stmt = stmt.where(
            Raid.id.in_(
                select(Participant.raid_id).where(
                    Participant.person_id == person_id, Participant.state != "withdrawn"
                )
            )
        )
    if args.get("starts_from"):
        stmt = stmt.where(Raid.starts_at >= _day_start(args["starts_from"], -1))
    if args.get("starts_until"):
        stmt = stmt.where(Raid.starts_at < _day_start(args["starts_until"], 2))
    page = paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])
    page["items"] = [raid_summary(r) for r in page["items"]]
    return page


def _day_start(day: dt.date, shift: int) -> dt.datetime:
    """A generous UTC bound around a local date (raids' zones differ by up to a day)."""
    return dt.datetime.combine(day + dt.timedelta(days=shift), dt.time(), dt.UTC)


@raids.route("/<raid_id>", methods=["GET"])
@raids.response(200, RaidOut)
@require(*EVERYONE)
def get_raid_view(raid_id: str) -> Any:
    raid = readable_raid(raid_id)
    audit_families(raid, "read")
    return detail(raid)


@raids.route("/<raid_id>", methods=["PATCH"])
@raids.arguments(RaidPatch)
@raids.response(200, RaidOut)
@require(COORDINATOR)
@idempotent
def change_raid(data: dict[str, Any], raid_id: str) -> Any:
    """Change a planned or confirmed raid; attendees get an updated invitation."""
    raid = get_raid(db_session(), raid_id, for_update=True)
    warnings = scheduling.update_raid(context(), raid, data)
    audit_families(raid, "update")
    return detail(raid, warnings)


def _transition(raid_id: str, action: Any) -> Any:
    raid = get_raid(db_session(), raid_id, for_update=True)
    action(raid)
    audit_families(raid, "read")
    return detail(raid)


@raids.route("/<raid_id>/confirm", methods=["POST"])
@raids.response(200, RaidOut)
@require(COORDINATOR)
@idempotent
def confirm_raid(raid_id: str) -> Any:
    """The raid goes ahead: its confirmed team must satisfy every rule."""
    return _transition(raid_id, lambda raid: scheduling.confirm_raid(context(), raid))


@raids.route("/<raid_id>/start", methods=["POST"])
@raids.response(200, RaidOut)
@require(*EVERYONE)
@idempotent
def start_raid(raid_id: str) -> Any:
    """The team sets off (the coordinator or a participant says so)."""
    raid = readable_raid(raid_id, for_update=True)
    return _transition(raid.id, lambda r: scheduling.start_raid(context(), r))


@raids.route("/<raid_id>/complete", methods=["POST"])
@raids.arguments(CompleteIn)
@raids.response(200, RaidOut)
@require(COORDINATOR)
@idempotent
def complete_raid(data: dict[str, Any], raid_id: str) -> Any:
    return _transition(
        raid_id,
        lambda raid: scheduling.complete_raid(
            context(), raid, data["note"], data["allow_unvisited"]
        ),
    )


@raids.route("/<raid_id>/cancel", methods=["POST"])
@raids.arguments(ReasonIn)
@raids.response(200, RaidOut)
@require(COORDINATOR)
@idempotent
def cancel_raid(data: dict[str, Any], raid_id: str) -> Any:
    """Call the raid off; attendees get METHOD:CANCEL."""
    return _transition(
        raid_id, lambda raid: scheduling.cancel_raid(context(), raid, data["reason"])
    )


@raids.route("/<raid_id>.ics", methods=["GET"])
@raids.response(200, description="RFC 5545 calendar of the raid", content_type="text/calendar")
@require(*EVERYONE)
def raid_calendar(raid_id: str) -> Any:
    """The raid as iCalendar (no family's personal data in it)."""
    raid = readable_raid(raid_id)
    return calendar_response(
        invitations.raid_ics(raid, opora_app().settings.public_url),
        f"raid-{raid.id}.ics",
    )


@raids.route("/<raid_id>/route", methods=["GET"])
@raids.response(200, RouteOut)
@require(*EVERYONE)
def get_route(raid_id: str) -> Any:
    raid = readable_raid(raid_id)
    if raid.route is None:
        raise NotFound("the raid has no planned route yet")
    audit_families(raid, "read", ["route"])
    return raid.route


@raids.route("/<raid_id>/route", methods=["POST"])
@raids.arguments(RouteIn)
@raids.response(200, RouteOut)
@require(COORDINATOR)
@idempotent
def plan_route(data: dict[str, Any], raid_id: str) -> Any:
    """Plan the visit order again, optionally with a measured distance matrix."""
    raid = get_raid(db_session(), raid_id, for_update=True)
    invitations.require_editable(raid)
    plan = scheduling.plan_route(context(), raid, data.get("distance_km"), data.get("family_ids"))
    audit_families(raid, "update", ["route"])
    return plan.as_dict(raid.timezone)


# --- participants ------------------------------------------------------------------------------


@raids.route("/<raid_id>/participants", methods=["POST"])
@raids.arguments(ParticipantIn)
@raids.response(201, ParticipantOut)
@require(COORDINATOR)
@idempotent
def invite(data: dict[str, Any], raid_id: str) -> Any:
    raid = get_raid(db_session(), raid_id, for_update=True)
    return invitations.invite(context(), raid, data), 201


@raids.route("/<raid_id>/participants/<participant_id>/confirm", methods=["POST"])
@raids.response(200, ParticipantOut)
@require(*EVERYONE)
@idempotent
def confirm_invitation(raid_id: str, participant_id: str) -> Any:
    raid = get_raid(db_session(), raid_id, for_update=True)
    participant = get_participant(raid, participant_id)
    _own(participant)
    invitations.respond(context(), raid, participant, True, None)
    return participant


@raids.route("/<raid_id>/participants/<participant_id>/decline", methods=["POST"])
@raids.arguments(DeclineIn)
@raids.response(200, ParticipantOut)
@require(*EVERYONE)
@idempotent
def decline_invitation(data: dict[str, Any], raid_id: str, participant_id: str) -> Any:
    raid = get_raid(db_session(), raid_id, for_update=True)
    participant = get_participant(raid, participant_id)
    _own(participant)
    invitations.respond(context(), raid, participant, False, data["reason"])
    return participant


@raids.route("/<raid_id>/participants/<participant_id>/withdraw", methods=["POST"])
@raids.response(200, ParticipantOut)
@require(COORDINATOR)
@idempotent
def withdraw(raid_id: str, participant_id: str) -> Any:
    raid = get_raid(db_session(), raid_id, for_update=True)
    participant = get_participant(raid, participant_id)
    invitations.withdraw(context(), raid, participant)
    return participant


@raids.route("/<raid_id>/participants/<participant_id>/replacement", methods=["POST"])
@raids.arguments(ParticipantIn)
@raids.response(201, ParticipantOut)
@require(COORDINATOR)
@idempotent
def replace(data: dict[str, Any], raid_id: str, participant_id: str) -> Any:
    """Invite someone in place of a participant who declined (or is withdrawn now)."""
    raid = get_raid(db_session(), raid_id, for_update=True)
    participant = get_participant(raid, participant_id)
    return invitations.replace(context(), raid, participant, data), 201
