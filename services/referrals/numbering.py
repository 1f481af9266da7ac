"""Human referral numbers, ``R-2026-000123``: a per-year sequence that never repeats.

PostgreSQL: one sequence per year, ``referral_number_<year>``, and ``nextval`` inside the
referral's own transaction. A sequence hands out values without a row lock and without a
commit of its own: the counter row it replaced cost every create a second commit (a WAL flush),
and holding that row's lock until the referral's commit would have serialised all creates. A
process creates the year's sequence the first time it numbers in that year (``IF NOT EXISTS``
in a short transaction of its own, starting after the year's counter row if there is one; two
processes racing both end with the one sequence). The price, as with any sequence, is a gap
when a create rolls back after taking its number.

SQLite has one writer at a time, so there the year's row in ``referral_counters`` is bumped by
one upsert (``INSERT .. ON CONFLICT DO UPDATE .. RETURNING``) inside the transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import weakref

from sqlalchemy import Connection, Engine, Select, Sequence, Table, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateSequence

from services.referrals.models import ReferralCounter

PREFIX = "R"

# Years whose sequence this process has seen to exist, per engine (each engine is a database).
_sequences: weakref.WeakKeyDictionary[Engine, set[int]] = weakref.WeakKeyDictionary()


def format_number(year: int, sequence: int) -> str:
    return f"{PREFIX}-{year}-{sequence:06d}"


def sequence_name(year: int) -> str:
    return f"referral_number_{int(year)}"


def _counter() -> Table:
    table: Table = ReferralCounter.__table__  # type: ignore[assignment]
    return table


@functools.cache
def _bump(year: int) -> object:
    table = _counter()
    return (
        sqlite.insert(table)
        .values(year=year, last=1)
        .on_conflict_do_update(index_elements=["year"], set_={"last": table.c.last + 1})
        .returning(table.c.last)
    )


def next_number(session: Session, now: dt.datetime) -> str:
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        value = session.execute(_bump(now.year)).scalar_one()  # type: ignore[call-overload]
        return format_number(now.year, value)
    engine = bind.engine if isinstance(bind, Connection) else bind
    assert isinstance(engine, Engine)
    _ensure_sequence(engine, now.year)
    value = session.execute(_next_value(now.year)).scalar_one()
    return format_number(now.year, value)


@functools.cache
def _next_value(year: int) -> Select[int]:
    return select(Sequence(sequence_name(year)).next_value())


def _ensure_sequence(engine: Engine, year: int) -> None:
    known = _sequences.setdefault(engine, set())
    if year in known:
        return
    table = _counter()
    with engine.connect() as conn:
        last = conn.scalar(select(table.c.last).where(table.c.year == year)) or 0
        try:
            conn.execute(
                CreateSequence(Sequence(sequence_name(year), start=last + 1), if_not_exists=True)
            )
            conn.commit()
        except (IntegrityError, ProgrammingError) as exc:
            # another process created it at the same moment: IF NOT EXISTS does not lock, so
            # PostgreSQL answers a unique violation in its catalogue or duplicate_table (42P07)
            if isinstance(exc, ProgrammingError) and getattr(exc.orig, "sqlstate", None) != "42P07":
                raise
            conn.rollback()
    known.add(year)
