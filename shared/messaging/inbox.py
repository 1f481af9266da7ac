"""The inbox of a consuming service: the ids of the messages it has handled, written in the
same transaction as the handlers' effects (shared/messaging/consumer.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from shared.db import utcnow
from shared.events import Event
from shared.tables import InfrastructureTables


class Inbox:
    """Records handled message ids; ``claim`` returns the ids that were not there yet.

    On PostgreSQL one statement does it (``INSERT ... ON CONFLICT DO NOTHING RETURNING``, the
    ids as arrays): a look-up of hundreds of ids first was planned as a scan of the whole inbox
    once the statistics lagged, and a statement of hundreds of placeholders cost more to build,
    parse and plan than the rows cost to write. A concurrent consumer's claim of the same id
    waits for that consumer's transaction and then counts as a duplicate.
    """

    def __init__(self, tables: InfrastructureTables) -> None:
        inbox = self.table = tables.inbox
        self._claim_pg = (
            pg_insert(inbox)
            .from_select(
                ["message_id", "event_type", "handled_at"],
                select(
                    func.unnest(bindparam("ids", type_=ARRAY(String))),
                    func.unnest(bindparam("types", type_=ARRAY(String))),
                    bindparam("at", type_=inbox.c.handled_at.type),
                ),
            )
            .on_conflict_do_nothing()
            .returning(inbox.c.message_id)
        )

    def claim(self, session: Session, events: list[Event]) -> set[str]:
        at = utcnow()
        if session.get_bind().dialect.name == "postgresql":
            values = {"ids": [e.id for e in events], "types": [e.type for e in events], "at": at}
            return set(session.scalars(self._claim_pg, values))
        inbox = self.table
        ids = [e.id for e in events]
        seen = set(session.scalars(select(inbox.c.message_id).where(inbox.c.message_id.in_(ids))))
        rows: dict[str, dict[str, Any]] = {}
        for e in events:
            if e.id not in seen:
                rows.setdefault(e.id, {"message_id": e.id, "event_type": e.type, "handled_at": at})
        if rows:
            session.execute(inbox.insert(), list(rows.values()))
        return set(rows)
