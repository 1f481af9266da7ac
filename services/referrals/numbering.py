"""Human referral numbers, ``R-2026-000123``: a per-year sequence that never repeats.

One row per year in ``referral_counters`` is bumped by a single upsert (``INSERT .. ON
CONFLICT DO UPDATE .. RETURNING``), the same statement on PostgreSQL and SQLite; the first
referral of a year creates the row, and two racing "first" referrals both land in the
conflict branch. The row lock makes concurrent bumps wait for each other, never share a value.

On PostgreSQL the bump commits in its own short transaction, like a sequence: holding the
counter's row lock until the referral's transaction commits would serialise every create
behind one row lock (on this 2-core machine, CPU-bound anyway, the bench showed no
difference; with more cores it would cap creates at one transaction at a time). The price is a gap when a create
rolls back after taking its number. SQLite has one writer at a time anyway, and a second
connection would wait for the first one's lock, so there the bump stays in the transaction.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.referrals.models import ReferralCounter

PREFIX = "R"


def format_number(year: int, sequence: int) -> str:
    return f"{PREFIX}-{year}-{sequence:06d}"


def _bump(dialect: str, year: int) -> object:
    table: Table = ReferralCounter.__table__  # type: ignore[assignment]
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(table)
        .values(year=year, last=1)
        .on_conflict_do_update(index_elements=["year"], set_={"last": table.c.last + 1})
        .returning(table.c.last)
    )


def next_number(session: Session, now: dt.datetime) -> str:
    bind = session.get_bind()
    dialect = bind.dialect.name
    stmt = _bump(dialect, now.year)
    if dialect == "postgresql":
        engine = bind.engine if isinstance(bind, Connection) else bind
        assert isinstance(engine, Engine)
        with engine.connect() as conn:
            value = conn.execute(stmt).scalar_one()  # type: ignore[call-overload]
            conn.commit()
    else:
        value = session.execute(stmt).scalar_one()  # type: ignore[call-overload]
    return format_number(now.year, value)
