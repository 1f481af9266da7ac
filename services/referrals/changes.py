"""The feed of changed referrals that agency systems poll (``GET /referrals/changes``), built so
that it cannot skip a change.

Why not ``(updated_at, id)``: the time (or any number the application takes) is fixed when a
transaction writes, but its rows become visible when it commits, and transactions commit in
another order than they write. A transaction that wrote before a poll and commits after it
carries a position the poll's cursor has already passed: it is never returned.

So every insert or update of a referral stores a **change number** tied to commit order (the
column default ``ChangeMark``), and a poll returns only numbers below a **horizon** under which
every writer has finished, oldest first by ``(number, id)``, with an opaque cursor:

* PostgreSQL: the number is the id of the writing transaction, ``pg_current_xact_id()`` (64
  bits with the epoch: it never wraps). The horizon comes from a snapshot: its ``xmax`` (no id
  at or above it had been given out), lowered to the oldest id the snapshot saw running, leaving
  out those that ``pg_stat_activity`` / ``pg_prepared_xacts`` show running in *another*
  database (an id belongs to one transaction, in one database, and cannot write here). Every
  id below the horizon had finished when the snapshot was taken, so its rows are visible in that
  snapshot and in any later one: the rows are read in that snapshot (REPEATABLE READ) or a later
  one (READ COMMITTED, the default). Not ``pg_snapshot_xmin``: it counts the transactions of
  every database of the cluster (other services' databases, a migration, a forgotten ``idle in
  transaction`` session), and one of them would stall this feed for as long as it runs.
* SQLite: one writer at a time, holding the database from its first write to its commit, so a
  number taken as ``max + 1`` inside the write follows commit order. The horizon is the largest
  committed number + 1; a writer still open has taken exactly that number or more.

The proof, for both: a poll returns rows below the horizon ``H`` after the cursor ``C``, and the
next cursor is the last row returned, or ``(H, "")`` when the page is not full (nothing in scope
is left below ``H``). Either way the next cursor is below or at ``H``, and everything below it
was visible to this poll; a change that was not visible to it is numbered ``H`` or more, so
above the next cursor, and is returned by a later poll. The horizon is read before the rows,
in statements of its own, so the rows are read in its snapshot or a newer one.

What it costs: a transaction of this database that writes and runs long (or a prepared one left
behind) holds the horizon back, and changes committed meanwhile wait for it to end: delayed,
never lost. A referral changed again moves to its new number: a poll returns each referral's
state as it is, once, not every step (the steps are in the referral's history).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Select, func, select, text, tuple_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import FunctionElement

from shared.errors import BadRequest

if TYPE_CHECKING:
    from services.referrals.models import Referral

CURSOR_PREFIX = "c2:"
FORMER_CURSOR_HINT = (
    "a cursor of the former (time-based) feed: poll once without 'since' and keep the new "
    "next_cursor"
)


class ChangeMark(FunctionElement[int]):
    """The change number of the referral being written, as the default and on-update of its
    column: the writing transaction's id on PostgreSQL, the largest number + 1 on SQLite
    (referrals are never deleted, a mistaken one ends entered-in-error, so that never goes
    back)."""

    type = BigInteger()
    inherit_cache = True


@compiles(ChangeMark)
def _sqlite_mark(element: ChangeMark, compiler: Any, **kw: Any) -> str:
    return "(SELECT coalesce(max(change_seq), 0) + 1 FROM referrals)"


@compiles(ChangeMark, "postgresql")
def _postgres_mark(element: ChangeMark, compiler: Any, **kw: Any) -> str:
    return "CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)"


@dataclass(frozen=True)
class Position:
    """Where a reader of the feed stands: after ``(number, referral_id)``."""

    number: int
    referral_id: str

    def encode(self) -> str:
        raw = f"{CURSOR_PREFIX}{self.number}:{self.referral_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        """Raises BadRequest naming ``since`` for anything but a cursor of this feed."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raw = ""
        if raw.startswith(CURSOR_PREFIX):
            number, _, referral_id = raw[len(CURSOR_PREFIX) :].partition(":")
            if number.isdigit() and len(referral_id) <= 36:
                return cls(int(number), referral_id)
        hint = FORMER_CURSOR_HINT if "|" in raw else "not a cursor of this feed"
        raise BadRequest("invalid cursor", errors={"since": [hint]})


@dataclass(frozen=True)
class Page:
    items: list[Referral]
    next_cursor: str | None


SNAPSHOT = (
    "SELECT CAST(CAST(pg_snapshot_xmax(s) AS TEXT) AS BIGINT),"
    " ARRAY(SELECT CAST(CAST(x AS TEXT) AS BIGINT) FROM pg_snapshot_xip(s) AS x)"
    " FROM pg_current_snapshot() AS s"
)
RUNNING_ELSEWHERE = (
    "SELECT CAST(CAST(backend_xid AS TEXT) AS BIGINT) FROM pg_stat_activity"
    " WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()"
    " UNION ALL SELECT CAST(CAST(transaction AS TEXT) AS BIGINT) FROM pg_prepared_xacts"
    " WHERE database <> current_database()"
)
# pg_stat_activity and pg_prepared_xacts show 32-bit ids: running ones are told apart by those bits
XID_BITS = 2**32


def horizon(session: Session, number: Any) -> int:
    """The change number below which every writer has finished (see the module's docstring)."""
    if session.get_bind().dialect.name != "postgresql":
        return int(session.scalar(select(func.coalesce(func.max(number), 0) + 1)) or 1)
    newest, running = session.execute(text(SNAPSHOT)).one()
    elsewhere = set(session.scalars(text(RUNNING_ELSEWHERE)))
    return min([int(newest), *(x for x in running if x % XID_BITS not in elsewhere)])


def read(session: Session, visible: Select[Referral], since: str | None, limit: int) -> Page:
    """Up to ``limit`` of the ``visible`` referrals changed after the cursor ``since``, oldest
    change first, and the cursor to poll with next."""
    after = Position.decode(since) if since else None
    number, referral_id = visible.selected_columns.change_seq, visible.selected_columns.id
    below = horizon(session, number)
    stmt = visible.where(number < below)
    if after is not None:
        stmt = stmt.where(tuple_(number, referral_id) > tuple_(after.number, after.referral_id))
    items = list(session.scalars(stmt.order_by(number, referral_id).limit(limit)))
    if len(items) == limit:
        last = items[-1]
        return Page(items, Position(last.change_seq, last.id).encode())
    if after is not None and after.number >= below:
        return Page(items, since)  # never backwards, whatever the horizon did
    return Page(items, Position(below, "").encode())
