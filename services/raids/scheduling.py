"""Scheduling a raid and living through it: create, change, confirm, start, complete, cancel,
and plan its visit order. Every change that participants' calendars must see raises the raid's
SEQUENCE and publishes its ``.ics`` (see ``invitations.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.raids import events, routing
from services.raids.domain import (
    Context,
    ensure_can_move,
    families_of,
    local,
    move,
    on_board,
    problems,
    recent_visit_warnings,
    refuse_people,
    refuse_team,
    set_families,
    window,
)
from services.raids.invitations import (
    PARTICIPANT_FIELDS,
    attendees,
    calendar,
    facts,
    publish_invited,
    publish_updated,
    raid_ics,
    raid_url,
    require_editable,
)
from services.raids.models import KnownFamily, Participant, Raid
from shared.db import utcnow
from shared.errors import Conflict, RuleViolation

SETTINGS_FIELDS = ("title", "purpose", "organizer_name", "organizer_email")
ROUTE_FIELDS = ("minutes_per_visit", "speed_kmh", "road_factor")


# --- the raid ----------------------------------------------------------------------------------


def _participants(data: list[dict[str, Any]]) -> list[Participant]:
    seen: set[str] = set()
    people = []
    now = utcnow()
    for index, item in enumerate(data):
        if item["person_id"] in seen:
            raise RuleViolation(
                "a person is listed twice",
                errors={f"participants.{index}.person_id": ["listed twice"]},
            )
        seen.add(item["person_id"])
        values = {k: item.get(k) for k in PARTICIPANT_FIELDS}
        people.append(
            Participant(
                **values, state="invited", invited_at=now + dt.timedelta(microseconds=index)
            )
        )
    return people


def schedule_raid(ctx: Context, data: dict[str, Any]) -> tuple[Raid, list[str]]:
    """Create a planned raid, check its team and families, plan the route and invite everyone."""
    starts, ends = window(data["date"], data["start_time"], data["end_time"], data["timezone"])
    centre = data["centre"]
    raid = Raid(
        title=data["title"],
        purpose=data["purpose"],
        district=data["district"],
        starts_at=starts,
        ends_at=ends,
        timezone=data["timezone"],
        status="planned",
        coordinator_id=ctx.actor,
        organizer_name=data.get("organizer_name"),
        organizer_email=data["organizer_email"],
        centre_name=centre["name"],
        centre_latitude=centre["latitude"],
        centre_longitude=centre["longitude"],
        minutes_per_visit=data["minutes_per_visit"],
        speed_kmh=data["speed_kmh"],
        road_factor=data["road_factor"],
        sequence=0,
        series_id=data.get("series_id"),
        updated_at=utcnow(),
    )
    ctx.session.add(raid)
    set_families(ctx.session, raid, data.get("family_ids") or [])
    raid.participants = _participants(data["participants"])
    ctx.session.flush()
    refuse_people(ctx.session, raid, raid.participants)
    refuse_team(ctx.session, raid, ctx.rules)
    plan = plan_route(ctx, raid)
    warnings = recent_visit_warnings(ctx.session, raid, ctx.rules) + plan.warnings
    ctx.session.flush()
    events.publish(
        ctx.session,
        "raids.raid.scheduled",
        {
            **facts(ctx, raid),
            "family_ids": [s.family_id for s in raid.stops],
            "participants": attendees(raid),
            "series_id": raid.series_id,
        },
    )
    for participant in raid.participants:
        publish_invited(ctx, raid, participant)
    return raid, warnings


def update_raid(ctx: Context, raid: Raid, data: dict[str, Any]) -> list[str]:
    """Change a planned or confirmed raid. Moving its time resets confirmations: everyone must
    confirm the new time, and the raid is planned again."""
    require_editable(raid)
    changed: list[str] = []
    start_local, end_local = local(raid, raid.starts_at), local(raid, raid.ends_at)
    timezone = data.get("timezone", raid.timezone)
    starts, ends = window(
        data.get("date", start_local.date()),
        data.get("start_time", start_local.time().replace(tzinfo=None)),
        data.get("end_time", end_local.time().replace(tzinfo=None)),
        timezone,
    )
    time_moved = (starts, ends) != (raid.starts_at, raid.ends_at)
    if time_moved or timezone != raid.timezone:
        raid.starts_at, raid.ends_at, raid.timezone = starts, ends, timezone
        changed.append("time")
    for name in (*SETTINGS_FIELDS, *ROUTE_FIELDS):
        if name in data and data[name] != getattr(raid, name):
            setattr(raid, name, data[name])
            changed.append(name)
    if "centre" in data:
        centre = data["centre"]
        values = (centre["name"], centre["latitude"], centre["longitude"])
        if values != (raid.centre_name, raid.centre_latitude, raid.centre_longitude):
            raid.centre_name, raid.centre_latitude, raid.centre_longitude = values
            changed.append("centre")
    if "family_ids" in data and data["family_ids"] != [s.family_id for s in raid.stops]:
        set_families(ctx.session, raid, data["family_ids"])
        changed.append("families")
    if not changed:
        return []
    ctx.session.flush()
    reconfirm = False
    if time_moved:
        refuse_people(ctx.session, raid, on_board(raid))
        for participant in raid.participants:
            if participant.state == "confirmed":
                participant.state = "invited"
                participant.responded_at = None
                reconfirm = True
        if raid.status == "confirmed":
            move(raid, "planned")
            reconfirm = True
    refuse_team(ctx.session, raid, ctx.rules)
    plan = plan_route(ctx, raid)
    raid.sequence += 1
    raid.updated_at = utcnow()
    publish_updated(ctx, raid, changed, reconfirm)
    return recent_visit_warnings(ctx.session, raid, ctx.rules) + plan.warnings


def confirm_raid(ctx: Context, raid: Raid) -> None:
    """The raid goes ahead: the confirmed people alone must satisfy every rule."""
    if raid.status == "confirmed":
        return
    ensure_can_move(raid, "confirmed")
    found = problems(ctx.session, raid, ctx.rules, confirmed_only=True)
    if found:
        raise RuleViolation(
            "the raid cannot be confirmed yet; see errors", errors={"participants": found}
        )
    move(raid, "confirmed")
    raid.sequence += 1
    raid.updated_at = utcnow()
    publish_updated(ctx, raid, ["status"], False)


def start_raid(ctx: Context, raid: Raid) -> None:
    if raid.status == "in_progress":
        return
    if raid.status == "planned":
        raise Conflict("confirm the raid before starting it", errors={"status": ["is planned"]})
    move(raid, "in_progress")
    raid.started_at = utcnow()


def complete_raid(ctx: Context, raid: Raid, note: str | None, allow_unvisited: bool) -> None:
    """Close the raid. Every family needs a visit act, unless the coordinator says why some
    were not visited (``note``)."""
    if raid.status == "completed":
        return
    if raid.status != "in_progress":
        raise Conflict(
            f"only a raid in progress can be completed; this one is {raid.status}",
            errors={"status": [f"is {raid.status}"]},
        )
    visited = {v.family_id for v in raid.visits}
    missing = [s.family_id for s in raid.stops if s.family_id not in visited]
    if missing and not (allow_unvisited and note):
        raise RuleViolation(
            f"{len(missing)} family(ies) have no visit act; record them, or complete with "
            "allow_unvisited and a note saying why",
            errors={"family_ids": missing},
        )
    move(raid, "completed")
    raid.completed_at = utcnow()
    raid.completion_note = note
    outcomes: dict[str, int] = {}
    for visit in raid.visits:
        outcomes[visit.outcome] = outcomes.get(visit.outcome, 0) + 1
    events.publish(
        ctx.session,
        "raids.raid.completed",
        {
            **facts(ctx, raid),
            "families_planned": len(raid.stops),
            "outcomes": outcomes,
            "not_visited": missing,
            "followups_requested": sum(len(v.followups) for v in raid.visits),
            "urgent_concerns": sum(1 for v in raid.visits if v.urgent_concern),
            "report_url": f"{raid_url(ctx, raid)}/report",
        },
    )


def cancel_raid(ctx: Context, raid: Raid, reason: str) -> None:
    """Call the raid off; every attendee's calendar gets METHOD:CANCEL."""
    if raid.status == "cancelled":
        return
    move(raid, "cancelled")
    raid.cancel_reason = reason
    raid.cancelled_at = utcnow()
    raid.sequence += 1
    raid.updated_at = utcnow()
    events.publish(
        ctx.session,
        "raids.raid.cancelled",
        {
            **facts(ctx, raid),
            **calendar(ctx, raid, raid_ics(raid, ctx.public_url)),
            "reason": reason,
            "cancelled_by": ctx.actor,
            "attendees": attendees(raid),
        },
    )


# --- the visit order ---------------------------------------------------------------------------


def plan_route(
    ctx: Context,
    raid: Raid,
    distance_km: list[list[float]] | None = None,
    matrix_order: list[str] | None = None,
) -> routing.VisitPlan:
    """Order the raid's families and store the plan with arrival times and warnings.

    A measured ``distance_km`` matrix names its rows: the centre, then ``matrix_order``."""
    families = families_of(ctx.session, raid)
    if distance_km is not None:
        if matrix_order is None or sorted(matrix_order) != sorted(f.family_id for f in families):
            raise RuleViolation(
                "a distance matrix needs family_ids: the raid's families in the matrix's order",
                errors={"family_ids": ["must list each of the raid's families once"]},
            )
        by_id = {f.family_id: f for f in families}
        families = [by_id[family_id] for family_id in matrix_order]
    stops = [
        routing.Stop(
            f.family_id,
            f.settlement,
            routing.Point(f.latitude, f.longitude)
            if f.latitude is not None and f.longitude is not None
            else None,
        )
        for f in families
    ]
    try:
        plan = routing.plan_visits(
            centre=routing.Point(raid.centre_latitude, raid.centre_longitude),
            centre_name=raid.centre_name,
            stops=stops,
            window_start=raid.starts_at,
            window_end=raid.ends_at,
            minutes_per_visit=raid.minutes_per_visit,
            speed_kmh=raid.speed_kmh,
            road_factor=raid.road_factor,
            settlements=settlement_points(ctx.session, raid.district),
            distance_km=distance_km,
        )
    except ValueError as exc:
        raise RuleViolation(str(exc), errors={"distance_km": [str(exc)]}) from None
    position = {s.key: s.position for s in plan.stops}
    for stop in raid.stops:
        stop.position = position.get(stop.family_id, stop.position)
    raid.stops.sort(key=lambda s: s.position)
    raid.route = plan.as_dict(raid.timezone)
    return plan


def settlement_points(session: Session, district: str) -> dict[str, routing.Point]:
    """Where a settlement is, from the families in it whose coordinates are known."""
    rows = session.execute(
        select(KnownFamily.settlement, KnownFamily.latitude, KnownFamily.longitude).where(
            KnownFamily.district == district,
            KnownFamily.latitude.is_not(None),
            KnownFamily.longitude.is_not(None),
        )
    ).all()
    sums: dict[str, list[float]] = {}
    for settlement, lat, lon in rows:
        if lat is None or lon is None:
            continue
        acc = sums.setdefault(settlement, [0.0, 0.0, 0.0])
        acc[0] += lat
        acc[1] += lon
        acc[2] += 1
    return {s: routing.Point(a[0] / a[2], a[1] / a[2]) for s, a in sums.items()}
