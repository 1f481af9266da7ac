"""Raids as the API shows them: plain dicts for the response schemas, built from the models."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services.raids.domain import (
    RaidRules,
    availability_problems,
    families_of,
    local,
    problems,
    recent_visit_warnings,
    removed_family_warnings,
)
from services.raids.models import Absence, Raid, RaidSeries

FAMILY_FIELDS = ["number", "display_name", "category", "address", "latitude", "longitude"]


def raid_summary(raid: Raid) -> dict[str, Any]:
    start, end = local(raid, raid.starts_at), local(raid, raid.ends_at)
    return {
        "id": raid.id,
        "title": raid.title,
        "purpose": raid.purpose,
        "district": raid.district,
        "status": raid.status,
        "starts_at": raid.starts_at,
        "ends_at": raid.ends_at,
        "timezone": raid.timezone,
        "local_date": start.date(),
        "local_start": f"{start:%H:%M}",
        "local_end": f"{end:%H:%M}",
        "family_count": len(raid.stops),
        "participant_count": sum(1 for p in raid.participants if p.state != "withdrawn"),
        "series_id": raid.series_id,
        "sequence": raid.sequence,
    }


def raid_detail(
    session: Session,
    raid: Raid,
    rules: RaidRules,
    public_url: str,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The whole raid, with the families' names and addresses (the caller audits the read)."""
    families = {f.family_id: f for f in families_of(session, raid)}
    planned = {s["family_id"]: s for s in (raid.route or {}).get("stops", [])}
    visits = {v.family_id: v for v in raid.visits}
    stops = []
    for stop in raid.stops:
        family = families.get(stop.family_id)
        plan = planned.get(stop.family_id, {})
        visit = visits.get(stop.family_id)
        stops.append(
            {
                "position": stop.position,
                "family_id": stop.family_id,
                "number": family.number if family else None,
                "display_name": family.display_name if family else None,
                "category": family.category if family else None,
                "settlement": family.settlement if family else None,
                "address": family.address if family else None,
                "latitude": family.latitude if family else None,
                "longitude": family.longitude if family else None,
                "planned_arrival": plan.get("arrival"),
                "placement": plan.get("placement"),
                "visit_id": visit.id if visit else None,
                "outcome": visit.outcome if visit else None,
            }
        )
    active = raid.status in ("planned", "confirmed")
    if warnings is None:
        warnings = (
            removed_family_warnings(session, raid)
            + recent_visit_warnings(session, raid, rules)
            + list((raid.route or {}).get("warnings", []))
            if active
            else []
        )
    return {
        **raid_summary(raid),
        "coordinator_id": raid.coordinator_id,
        "organizer_name": raid.organizer_name,
        "organizer_email": raid.organizer_email,
        "centre": {
            "name": raid.centre_name,
            "latitude": raid.centre_latitude,
            "longitude": raid.centre_longitude,
        },
        "minutes_per_visit": raid.minutes_per_visit,
        "speed_kmh": raid.speed_kmh,
        "road_factor": raid.road_factor,
        "cancel_reason": raid.cancel_reason,
        "completion_note": raid.completion_note,
        "created_at": raid.created_at,
        "updated_at": raid.updated_at,
        "started_at": raid.started_at,
        "completed_at": raid.completed_at,
        "cancelled_at": raid.cancelled_at,
        "participants": list(raid.participants),
        "families": stops,
        "route": raid.route,
        "problems": _problems(session, raid, rules) if active else [],
        "warnings": warnings,
        "ics_url": f"{public_url}/raids/{raid.id}.ics",
    }


def _problems(session: Session, raid: Raid, rules: RaidRules) -> list[str]:
    """What blocks confirming, and who of those still invited is not free."""
    invited = [p for p in raid.participants if p.state == "invited"]
    return problems(session, raid, rules, confirmed_only=True) + availability_problems(
        session, raid, invited
    )


def absence_out(absence: Absence, affected: list[Raid] | None = None) -> dict[str, Any]:
    return {
        "id": absence.id,
        "person_id": absence.person_id,
        "starts_on": absence.starts_on,
        "ends_on": absence.ends_on,
        "kind": absence.kind,
        "note": absence.note,
        "recorded_by": absence.recorded_by,
        "created_at": absence.created_at,
        "affected_raids": [r.id for r in affected or []],
    }


def series_out(
    series: RaidSeries, raids: list[Raid], warnings: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    return {
        "id": series.id,
        "title": series.title,
        "district": series.district,
        "frequency": series.frequency,
        "interval": series.interval,
        "occurrences": series.occurrences,
        "first_date": series.first_date,
        "coordinator_id": series.coordinator_id,
        "created_at": series.created_at,
        "raids": [raid_summary(r) for r in raids],
        "warnings": warnings or {},
    }
