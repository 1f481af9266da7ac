"""Recurring raid series and people's declared absences.

A series is a convenience for the coordinator: it creates individual raids, each checked by
the same rules as any other; one occurrence that breaks a rule refuses the whole series, so a
half-created series never exists.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from sqlalchemy import select

from services.raids.domain import ON_BOARD, Context, local_dates
from services.raids.models import ACTIVE_STATUSES, Absence, Participant, Raid, RaidSeries
from services.raids.scheduling import cancel_raid, schedule_raid
from shared.db import utcnow
from shared.errors import DomainError, RuleViolation

MAX_OCCURRENCES = 24


def occurrence_dates(first: dt.date, frequency: str, interval: int, count: int) -> list[dt.date]:
    """Weekly or monthly dates; a monthly date past the month's end falls on its last day."""
    if frequency == "weekly":
        return [first + dt.timedelta(weeks=interval * i) for i in range(count)]
    if frequency != "monthly":
        raise ValueError(f"unknown frequency {frequency}")
    dates = []
    for i in range(count):
        month_index = first.month - 1 + interval * i
        year, month = first.year + month_index // 12, month_index % 12 + 1
        day = min(first.day, calendar.monthrange(year, month)[1])
        dates.append(dt.date(year, month, day))
    return dates


def create_series(
    ctx: Context, data: dict[str, Any]
) -> tuple[RaidSeries, list[Raid], dict[str, list[str]]]:
    """The series and its raids, with warnings per occurrence date."""
    template = data["raid"]
    series = RaidSeries(
        title=template["title"],
        district=template["district"],
        frequency=data["frequency"],
        interval=data["interval"],
        occurrences=data["occurrences"],
        first_date=template["date"],
        coordinator_id=ctx.actor,
    )
    ctx.session.add(series)
    ctx.session.flush()
    raids: list[Raid] = []
    warnings: dict[str, list[str]] = {}
    errors: dict[str, list[str]] = {}
    for date in occurrence_dates(
        template["date"], data["frequency"], data["interval"], data["occurrences"]
    ):
        try:
            with ctx.session.begin_nested():
                raid, found = schedule_raid(ctx, {**template, "date": date, "series_id": series.id})
        except DomainError as exc:
            errors[f"occurrences.{date.isoformat()}"] = [
                message
                for messages in (exc.errors or {"": [exc.detail]}).values()
                for message in messages
            ]
            continue
        raids.append(raid)
        if found:
            warnings[date.isoformat()] = found
    if errors:
        raise RuleViolation(
            f"{len(errors)} occurrence(s) of the series break a rule; nothing was created",
            errors=errors,
        )
    return series, raids, warnings


def cancel_series(ctx: Context, series: RaidSeries, reason: str) -> list[Raid]:
    """Cancel the series' raids that have not started yet."""
    raids = ctx.session.scalars(
        select(Raid).where(
            Raid.series_id == series.id,
            Raid.status.in_(("planned", "confirmed")),
            Raid.starts_at > utcnow(),
        )
    ).all()
    for raid in raids:
        cancel_raid(ctx, raid, reason)
    return list(raids)


def record_absence(
    ctx: Context, person_id: str, data: dict[str, Any]
) -> tuple[Absence, list[Raid]]:
    """Record leave or sick days; the raids the person is on during them are returned so the
    coordinator can find a replacement (an absence is never refused)."""
    if data["ends_on"] < data["starts_on"]:
        raise RuleViolation(
            "an absence ends on or after the day it starts",
            errors={"ends_on": ["must not be before starts_on"]},
        )
    absence = Absence(
        person_id=person_id,
        starts_on=data["starts_on"],
        ends_on=data["ends_on"],
        kind=data["kind"],
        note=data.get("note"),
        recorded_by=ctx.actor,
    )
    ctx.session.add(absence)
    ctx.session.flush()
    return absence, raids_during(ctx, person_id, absence.starts_on, absence.ends_on)


def raids_during(ctx: Context, person_id: str, first: dt.date, last: dt.date) -> list[Raid]:
    """Active raids the person is on whose local day falls within ``first``..``last``."""
    margin = dt.timedelta(days=1)
    candidates = ctx.session.scalars(
        select(Raid)
        .join(Participant, Participant.raid_id == Raid.id)
        .where(
            Participant.person_id == person_id,
            Participant.state.in_(ON_BOARD),
            Raid.status.in_(ACTIVE_STATUSES),
            Raid.starts_at < dt.datetime.combine(last + margin * 2, dt.time(), dt.UTC),
            Raid.ends_at > dt.datetime.combine(first - margin, dt.time(), dt.UTC),
        )
        .order_by(Raid.starts_at)
    ).all()
    return [r for r in candidates if local_dates(r)[0] <= last and local_dates(r)[1] >= first]
