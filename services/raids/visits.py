"""Visit acts: what the team found at each family, and what it sets in motion: the registry
logs the visit on the case, each follow-up becomes a referral, an urgent concern alerts the
coordinator at once."""

from __future__ import annotations

from typing import Any

from services.raids import events
from services.raids.domain import ON_BOARD, Context, local
from services.raids.invitations import raid_url
from services.raids.models import KnownFamily, Raid, VisitAct
from services.raids.scheduling import start_raid
from shared.db import new_id, utcnow
from shared.errors import Conflict, RuleViolation

SUMMARY_MAX = 2000
OUTCOME_TEXT = {
    "visited": "visited",
    "nobody_home": "nobody home",
    "refused_entry": "refused entry",
}


def summary(data: dict[str, Any]) -> str:
    """One text for the case log: outcome, findings, actions; cut to the event's limit."""
    parts = [f"Outcome: {OUTCOME_TEXT[data['outcome']]}."]
    if data.get("findings"):
        parts.append(f"Findings: {data['findings']}")
    if data.get("actions_taken"):
        parts.append(f"Actions on the spot: {data['actions_taken']}")
    if data.get("followups"):
        codes = ", ".join(f["service_code"] for f in data["followups"])
        parts.append(f"Follow-ups requested: {codes}.")
    text = "\n".join(parts)
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def record_visit(ctx: Context, raid: Raid, data: dict[str, Any]) -> VisitAct:
    """Record the act of one visit; a confirmed raid starts with its first act."""
    if raid.status == "confirmed":
        start_raid(ctx, raid)
    if raid.status != "in_progress":
        raise Conflict(
            f"visits are recorded while the raid is in progress; this one is {raid.status}",
            errors={"status": [f"is {raid.status}"]},
        )
    family_id = data["family_id"]
    if family_id not in {s.family_id for s in raid.stops}:
        raise RuleViolation(
            "the family is not on this raid", errors={"family_id": ["not on the raid"]}
        )
    if any(v.family_id == family_id for v in raid.visits):
        raise Conflict(
            "this family's visit act on this raid is already recorded",
            errors={"family_id": ["already recorded"]},
        )
    if data["outcome"] == "visited" and not data.get("conditions"):
        raise RuleViolation(
            "a visit that took place needs the conditions checklist",
            errors={"conditions": ["required when the outcome is visited"]},
        )
    if data["urgent_concern"] and not data.get("urgent_reason"):
        raise RuleViolation(
            "say what the urgent concern is",
            errors={"urgent_reason": ["required with urgent_concern"]},
        )
    board = {p.person_id: p for p in raid.participants if p.state in ON_BOARD}
    present = data.get("participant_ids") or [
        p.person_id for p in raid.participants if p.state == "confirmed"
    ]
    strangers = [person for person in present if person not in board]
    if strangers:
        raise RuleViolation(
            "only the raid's participants can be recorded as present",
            errors={"participant_ids": [f"{p}: not on the raid" for p in strangers]},
        )
    now = utcnow()
    visited_at = data.get("visited_at") or now
    if visited_at > now:
        raise RuleViolation(
            "a visit cannot be recorded ahead of time",
            errors={"visited_at": ["is in the future"]},
        )
    followups = [{"followup_id": new_id(), **f} for f in data.get("followups") or []]
    act = VisitAct(
        raid_id=raid.id,
        family_id=family_id,
        outcome=data["outcome"],
        visited_at=visited_at,
        conditions=data.get("conditions") or {},
        children_seen=data.get("children_seen") or 0,
        findings=data.get("findings"),
        actions_taken=data.get("actions_taken"),
        urgent_concern=data["urgent_concern"],
        urgent_reason=data.get("urgent_reason"),
        followups=followups,
        participant_ids=present,
        recorded_by=ctx.actor,
        recorded_at=now,
    )
    raid.visits.append(act)
    ctx.session.flush()
    _publish(ctx, raid, act, data, sorted({board[p].agency_id for p in present}))
    return act


def _publish(
    ctx: Context, raid: Raid, act: VisitAct, data: dict[str, Any], agencies: list[str]
) -> None:
    events.publish(
        ctx.session,
        "raids.visit.recorded",
        {
            "visit_id": act.id,
            "raid_id": raid.id,
            "family_id": act.family_id,
            "visited_on": local(raid, act.visited_at).date(),
            "outcome": act.outcome,
            "urgent_concern": act.urgent_concern,
            "participants": list(act.participant_ids),
            "agencies": agencies,
            "summary": summary(data),
            "recorded_by": ctx.actor,
        },
    )
    for followup in act.followups:
        events.publish(
            ctx.session,
            "raids.followup.requested",
            {
                "followup_id": followup["followup_id"],
                "raid_id": raid.id,
                "visit_id": act.id,
                "family_id": act.family_id,
                "service_code": followup["service_code"],
                "agency_id": followup.get("agency_id"),
                "reason": followup["reason"],
                "urgency": followup["urgency"],
                "requested_by": ctx.actor,
                "requested_at": act.recorded_at,
            },
        )
    if act.urgent_concern:
        family = ctx.session.get(KnownFamily, act.family_id)
        events.publish(
            ctx.session,
            "raids.concern.raised",
            {
                "visit_id": act.id,
                "raid_id": raid.id,
                "family_id": act.family_id,
                "family_number": family.number if family is not None else act.family_id,
                "district": raid.district,
                "coordinator_id": raid.coordinator_id,
                "raised_by": ctx.actor,
                "raised_at": act.recorded_at,
                "visit_url": f"{raid_url(ctx, raid)}/visits/{act.id}",
            },
        )
