"""The dated address history of a family: one row from registration and one more on every move,
so that statistics count a family in the district it lived in at the moment that counts."""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry.models import Family, FamilyAddress
from shared.errors import RuleViolation

HISTORY_FIELDS = ("region", "district", "settlement", "street", "house", "flat")
CHUNK = 1000


def latest(session: Session, family_id: str) -> FamilyAddress | None:
    return session.scalar(
        select(FamilyAddress)
        .where(FamilyAddress.family_id == family_id)
        .order_by(FamilyAddress.valid_from.desc(), FamilyAddress.recorded_at.desc())
        .limit(1)
    )


def record(
    session: Session, family: Family, *, since: dt.date, by: str | None, today: dt.date
) -> FamilyAddress:
    """The family's current address holds from ``since``: not in the future, and not before the
    address it replaces began (a move is recorded in the order it happened)."""
    if since > today:
        raise RuleViolation(
            "a move cannot be dated in the future", errors={"moved_on": ["today or earlier"]}
        )
    previous = latest(session, family.id)
    if previous is not None and since < previous.valid_from:
        raise RuleViolation(
            "a move cannot predate the address it replaces",
            errors={"moved_on": [f"on or after {previous.valid_from.isoformat()}"]},
        )
    row = FamilyAddress(
        family_id=family.id,
        valid_from=since,
        recorded_by=by,
        **{key: getattr(family, key) for key in HISTORY_FIELDS},
    )
    session.add(row)
    return row


def history(session: Session, family_id: str) -> list[FamilyAddress]:
    return list(
        session.scalars(
            select(FamilyAddress)
            .where(FamilyAddress.family_id == family_id)
            .order_by(FamilyAddress.valid_from, FamilyAddress.recorded_at)
        )
    )


@dataclass(frozen=True)
class Place:
    region: str
    district: str


class Locations:
    """Where each of many families lived on a given day (region and district only)."""

    def __init__(self, rows: dict[str, list[tuple[dt.date, Place]]]) -> None:
        self._rows = rows
        self._days = {family: [day for day, _ in items] for family, items in rows.items()}

    @classmethod
    def load(cls, session: Session, family_ids: Iterable[str]) -> Locations:
        ids = sorted(set(family_ids))
        rows: dict[str, list[tuple[dt.date, Place]]] = defaultdict(list)
        for start in range(0, len(ids), CHUNK):
            for row in session.execute(
                select(
                    FamilyAddress.family_id,
                    FamilyAddress.valid_from,
                    FamilyAddress.region,
                    FamilyAddress.district,
                )
                .where(FamilyAddress.family_id.in_(ids[start : start + CHUNK]))
                .order_by(FamilyAddress.valid_from, FamilyAddress.recorded_at)
            ):
                rows[row.family_id].append((row.valid_from, Place(row.region, row.district)))
        return cls(dict(rows))

    def on(self, family_id: str, day: dt.date, fallback: Place) -> Place:
        """The address in force on ``day`` (the latest move on or before it; a day before the
        first known address takes the first one); ``fallback`` for a family without history."""
        items = self._rows.get(family_id)
        if not items:
            return fallback
        index = bisect.bisect_right(self._days[family_id], day) - 1
        return items[max(index, 0)][1]
