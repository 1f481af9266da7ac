"""Raids' rules, free of HTTP and broker: the raid's life, its participants and the checks that
keep a raid interagency, staffed by people who are free, and safe for ``sop`` families.

Errors name ids and fields, never a family's or person's details. The operations built on
these rules: ``scheduling.py`` (a raid's life and route), ``invitations.py`` (participants),
``series.py`` (recurring raids and absences), ``visits.py`` (visit acts), ``report.py``; pure
parts: ``routing.py`` (visit order), ``ical.py`` (iCalendar).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from services.raids.models import (
    ACTIVE_STATUSES,
    Absence,
    KnownFamily,
    Participant,
    Raid,
    RaidFamily,
    VisitAct,
)
from shared.config import ConfigError
from shared.db import get_or_404
from shared.errors import Conflict, NotFound, RuleViolation

TRANSITIONS: dict[str, frozenset[str]] = {
    "planned": frozenset({"confirmed", "cancelled"}),
    "confirmed": frozenset({"planned", "in_progress", "cancelled"}),
    "in_progress": frozenset({"completed"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}
ON_BOARD = ("invited", "confirmed")  # states in which a participant counts for the raid


@dataclass(frozen=True)
class RaidRules:
    """The configurable rules; ``from_env`` reads RAIDS_MIN_AGENCIES,
    RAIDS_SOP_REQUIRED_AGENCY_KINDS (comma-separated, empty to switch off) and
    RAIDS_RECENT_VISIT_DAYS."""

    min_agencies: int = 2
    sop_required_kinds: tuple[str, ...] = ("police_pdn",)
    recent_visit_days: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RaidRules:
        kinds = env.get("RAIDS_SOP_REQUIRED_AGENCY_KINDS")
        return cls(
            min_agencies=_whole(env, "RAIDS_MIN_AGENCIES", cls.min_agencies, 1),
            sop_required_kinds=(
                cls.sop_required_kinds
                if kinds is None
                else tuple(k.strip() for k in kinds.split(",") if k.strip())
            ),
            recent_visit_days=_whole(env, "RAIDS_RECENT_VISIT_DAYS", cls.recent_visit_days, 0),
        )


def _whole(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Context:
    """Who acts, under which rules, and where links point."""

    session: Session
    actor: str
    rules: RaidRules = field(default_factory=RaidRules)
    public_url: str = "http://127.0.0.1:8003"


# --- the read model of families ----------------------------------------------------------------


def remember_family(session: Session, data: dict[str, Any], occurred_at: dt.datetime) -> bool:
    """Upsert one family snapshot; an older version arriving late changes nothing."""
    return remember_families(session, [(data, occurred_at)]) == 1


def remember_families(session: Session, snapshots: list[tuple[dict[str, Any], dt.datetime]]) -> int:
    """Upsert a batch of snapshots in two statements; returns how many rows changed.

    Snapshots are whole, so the newest ``family_version`` of each family wins, whatever the
    order in which they arrive.
    """
    newest: dict[str, dict[str, Any]] = {}
    for data, occurred_at in snapshots:
        row = _snapshot_row(data, occurred_at)
        current = newest.get(row["family_id"])
        if current is None or row["family_version"] > current["family_version"]:
            newest[row["family_id"]] = row
    if not newest:
        return 0
    session.flush()
    rows = session.execute(
        select(KnownFamily.family_id, KnownFamily.family_version).where(
            KnownFamily.family_id.in_(list(newest))
        )
    )
    known: dict[str, int] = {family_id: version for family_id, version in rows}
    inserts = [row for family_id, row in newest.items() if family_id not in known]
    updates = [
        row
        for family_id, row in newest.items()
        if family_id in known and row["family_version"] > known[family_id]
    ]
    if inserts:
        session.execute(insert(KnownFamily), inserts)
    if updates:
        session.execute(update(KnownFamily), updates)
    session.expire_all()
    return len(inserts) + len(updates)


def _snapshot_row(data: dict[str, Any], occurred_at: dt.datetime) -> dict[str, Any]:
    address = data["address"]
    return {
        "family_id": data["family_id"],
        "number": data["number"],
        "category": data["category"],
        "district": address["district"],
        "settlement": address["settlement"],
        "address": address,
        "latitude": address.get("latitude"),
        "longitude": address.get("longitude"),
        "display_name": data["display_name"],
        "children_count": data.get("children_count"),
        "removed": bool(data.get("removed", False)),
        "family_version": data["family_version"],
        "updated_at": occurred_at,
    }


# --- time --------------------------------------------------------------------------------------


def window(
    date: dt.date, start: dt.time, end: dt.time, timezone: str
) -> tuple[dt.datetime, dt.datetime]:
    """The raid's window in UTC from its local date and times."""
    zone = ZoneInfo(timezone)
    if end <= start:
        raise RuleViolation(
            "the raid's window must end after it starts (on the same day)",
            errors={"end_time": ["must be later than start_time"]},
        )
    starts = dt.datetime.combine(date, start, zone).astimezone(dt.UTC)
    ends = dt.datetime.combine(date, end, zone).astimezone(dt.UTC)
    return starts, ends


def local(raid: Raid, moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(ZoneInfo(raid.timezone))


def local_dates(raid: Raid) -> tuple[dt.date, dt.date]:
    return local(raid, raid.starts_at).date(), local(raid, raid.ends_at).date()


# --- look-ups ----------------------------------------------------------------------------------


def get_raid(session: Session, raid_id: str, *, for_update: bool = False) -> Raid:
    return get_or_404(session, Raid, raid_id, for_update=for_update)


def get_participant(raid: Raid, participant_id: str) -> Participant:
    for participant in raid.participants:
        if participant.id == participant_id:
            return participant
    raise NotFound(f"no participant {participant_id} on raid {raid.id}")


def on_board(raid: Raid) -> list[Participant]:
    return [p for p in raid.participants if p.state in ON_BOARD]


def families_of(session: Session, raid: Raid) -> list[KnownFamily]:
    ids = [stop.family_id for stop in raid.stops]
    found = {
        f.family_id: f
        for f in session.scalars(select(KnownFamily).where(KnownFamily.family_id.in_(ids)))
    }
    return [found[i] for i in ids if i in found]


def move(raid: Raid, to: str) -> None:
    ensure_can_move(raid, to)
    raid.status = to


def ensure_can_move(raid: Raid, to: str) -> None:
    if to not in TRANSITIONS[raid.status]:
        raise Conflict(
            f"a {raid.status} raid cannot become {to}",
            errors={"status": [f"is {raid.status}"]},
        )


# --- the rules ---------------------------------------------------------------------------------


def interagency_problems(people: Iterable[Participant], rules: RaidRules) -> list[str]:
    agencies = {p.agency_id for p in people}
    if len(agencies) < rules.min_agencies:
        return [
            f"a raid is interagency: people from at least {rules.min_agencies} different "
            f"agencies must take part (now {len(agencies)})"
        ]
    return []


def sop_problems(
    people: Iterable[Participant], families: Iterable[KnownFamily], rules: RaidRules
) -> list[str]:
    if not rules.sop_required_kinds:
        return []
    sop = sorted(f.number for f in families if f.category == "sop")
    kinds = {p.agency_kind for p in people}
    if sop and not kinds & set(rules.sop_required_kinds):
        return [
            f"the raid visits {len(sop)} family(ies) in a socially dangerous situation (sop: "
            f"{', '.join(sop)}): someone from an agency of kind "
            f"{' or '.join(rules.sop_required_kinds)} must take part"
        ]
    return []


def overlap_problems(
    session: Session, raid: Raid, people: Iterable[Participant]
) -> dict[str, list[str]]:
    """Per person: the other active raids at an overlapping time they are already on."""
    person_ids = {p.person_id for p in people}
    if not person_ids:
        return {}
    rows = session.execute(
        select(Participant.person_id, Raid.id, Raid.starts_at, Raid.ends_at)
        .join(Raid, Participant.raid_id == Raid.id)
        .where(
            Participant.person_id.in_(person_ids),
            Participant.state.in_(ON_BOARD),
            Raid.status.in_(ACTIVE_STATUSES),
            Raid.id != raid.id,
            Raid.starts_at < raid.ends_at,
            Raid.ends_at > raid.starts_at,
        )
    ).all()
    problems: dict[str, list[str]] = {}
    for person_id, other_id, starts, ends in rows:
        problems.setdefault(person_id, []).append(
            f"person {person_id} is already on raid {other_id} "
            f"({local(raid, starts):%Y-%m-%d %H:%M}–{local(raid, ends):%H:%M}), which overlaps"
        )
    return problems


def absence_problems(
    session: Session, raid: Raid, people: Iterable[Participant]
) -> dict[str, list[str]]:
    """Per person: declared absences that cover the raid's day."""
    person_ids = {p.person_id for p in people}
    if not person_ids:
        return {}
    first, last = local_dates(raid)
    rows = session.scalars(
        select(Absence).where(
            Absence.person_id.in_(person_ids),
            Absence.starts_on <= last,
            Absence.ends_on >= first,
        )
    ).all()
    problems: dict[str, list[str]] = {}
    for absence in rows:
        problems.setdefault(absence.person_id, []).append(
            f"person {absence.person_id} declared an absence ({absence.kind}, "
            f"{absence.starts_on}–{absence.ends_on}) on the raid's day"
        )
    return problems


def recent_visit_warnings(session: Session, raid: Raid, rules: RaidRules) -> list[str]:
    """Families another raid visited, or will visit, within N days of this one."""
    ids = [stop.family_id for stop in raid.stops]
    if not ids or rules.recent_visit_days <= 0:
        return []
    span = dt.timedelta(days=rules.recent_visit_days)
    numbers = {f.family_id: f.number for f in families_of(session, raid)}
    warnings = []
    visits = session.execute(
        select(VisitAct.family_id, VisitAct.raid_id, VisitAct.visited_at).where(
            VisitAct.family_id.in_(ids),
            VisitAct.raid_id != raid.id,
            VisitAct.visited_at >= raid.starts_at - span,
            VisitAct.visited_at <= raid.ends_at,
        )
    ).all()
    for family_id, other, at in visits:
        warnings.append(
            f"family {numbers.get(family_id, family_id)} was visited by raid {other} on "
            f"{local(raid, at):%Y-%m-%d}, within {rules.recent_visit_days} days"
        )
    planned = session.execute(
        select(RaidFamily.family_id, Raid.id, Raid.starts_at)
        .join(Raid, RaidFamily.raid_id == Raid.id)
        .where(
            RaidFamily.family_id.in_(ids),
            Raid.id != raid.id,
            Raid.status.in_(ACTIVE_STATUSES),
            Raid.starts_at >= raid.starts_at - span,
            Raid.starts_at <= raid.starts_at + span,
        )
    ).all()
    for family_id, other, at in planned:
        warnings.append(
            f"family {numbers.get(family_id, family_id)} is also on raid {other} on "
            f"{local(raid, at):%Y-%m-%d}, within {rules.recent_visit_days} days"
        )
    return warnings


def removed_family_warnings(session: Session, raid: Raid) -> list[str]:
    """Families that left the data bank after the raid was planned."""
    return [
        f"family {f.number} was removed from the data bank after the raid was planned; "
        "take it off the raid"
        for f in families_of(session, raid)
        if f.removed
    ]


def availability_problems(session: Session, raid: Raid, people: list[Participant]) -> list[str]:
    found: list[str] = []
    for messages in (
        *overlap_problems(session, raid, people).values(),
        *absence_problems(session, raid, people).values(),
    ):
        found.extend(messages)
    return found


def problems(session: Session, raid: Raid, rules: RaidRules, *, confirmed_only: bool) -> list[str]:
    """What stops the raid from going ahead, counting invited people too unless
    ``confirmed_only`` (the bar for confirming the raid)."""
    people = [
        p
        for p in raid.participants
        if p.state == "confirmed" or (p.state == "invited" and not confirmed_only)
    ]
    found = interagency_problems(people, rules) + sop_problems(
        people, families_of(session, raid), rules
    )
    found += availability_problems(session, raid, people)
    if confirmed_only and not raid.stops:
        found.append("the raid has no families to visit")
    return found


def refuse_people(session: Session, raid: Raid, people: list[Participant]) -> None:
    errors: dict[str, list[str]] = {}
    for index, person in enumerate(raid.participants):
        if person not in people:
            continue
        messages = overlap_problems(session, raid, [person]).get(person.person_id, [])
        messages += absence_problems(session, raid, [person]).get(person.person_id, [])
        if messages:
            errors[f"participants.{index}.person_id"] = messages
    if errors:
        raise RuleViolation(
            "a participant is not free at the raid's time; see errors", errors=errors
        )


def refuse_team(session: Session, raid: Raid, rules: RaidRules) -> None:
    people = on_board(raid)
    messages = interagency_problems(people, rules) + sop_problems(
        people, families_of(session, raid), rules
    )
    if messages:
        raise RuleViolation(messages[0], errors={"participants": messages})


def set_families(session: Session, raid: Raid, family_ids: list[str]) -> None:
    if len(set(family_ids)) != len(family_ids):
        raise RuleViolation("a family is listed twice", errors={"family_ids": ["duplicate ids"]})
    known = {
        f.family_id: f
        for f in session.scalars(select(KnownFamily).where(KnownFamily.family_id.in_(family_ids)))
    }
    errors: dict[str, list[str]] = {}
    for index, family_id in enumerate(family_ids):
        family = known.get(family_id)
        if family is None:
            message = "unknown family: not (yet) received from the registry"
        elif family.removed:
            message = "the family was removed from the data bank"
        elif family.district != raid.district:
            message = "the family lives in another district than the raid's"
        else:
            continue
        errors[f"family_ids.{index}"] = [f"{family_id}: {message}"]
    if errors:
        raise RuleViolation("some families cannot be visited on this raid", errors=errors)
    kept = {stop.family_id: stop for stop in raid.stops}
    raid.stops = [
        kept.get(fid) or RaidFamily(family_id=fid, position=i)
        for i, fid in enumerate(family_ids, 1)
    ]
    for i, stop in enumerate(raid.stops, 1):
        stop.position = i
