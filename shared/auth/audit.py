"""The audit trail of reads and writes of a family's personal data: who, when, what, why.

Rows are written in the caller's session, so an entry commits or rolls back with the business
change it records. There is deliberately no function to change or delete an entry.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    String,
    Table,
    bindparam,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from shared.auth.context import current_principal
from shared.auth.principal import Principal
from shared.db import utcnow
from shared.logging import correlation_id
from shared.tables import InfrastructureTables

READ = "read"
CREATE = "create"
UPDATE = "update"
DELETE = "delete"
EXPORT = "export"
BREAK_GLASS = "break_glass"
LIST = "list"
SEARCH = "search"

MAX_QUERY_LIMIT = 1000


def _entry(
    principal: Principal,
    *,
    action: str,
    entity: str,
    entity_id: str | None,
    family_id: str | None,
    fields: list[str] | None,
    reason: str | None,
) -> dict[str, Any]:
    if not action or len(action) > 20:
        raise ValueError("audit action must be 1-20 characters")
    return {
        "at": utcnow(),
        "actor": principal.subject,
        "actor_agency": principal.agency_id,
        "actor_roles": sorted(principal.roles),
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "family_id": family_id,
        "fields": list(fields) if fields is not None else None,
        "reason": reason,
        "correlation_id": correlation_id.get(),
    }


def record(
    session: Session,
    tables: InfrastructureTables,
    *,
    action: str,
    entity: str,
    entity_id: str | None,
    family_id: str | None = None,
    fields: list[str] | None = None,
    reason: str | None = None,
) -> None:
    """Record that the current principal did ``action`` on ``entity``.

    ``fields`` lists field names that were read or changed, never their values.
    """
    entry = _entry(
        current_principal(),
        action=action,
        entity=entity,
        entity_id=entity_id,
        family_id=family_id,
        fields=fields,
        reason=reason,
    )
    # The values as parameters of the table's plain INSERT: ``.values()`` would build a new
    # statement for every entry.
    session.execute(tables.audit_log.insert(), entry)


def record_families(
    session: Session,
    tables: InfrastructureTables,
    *,
    action: str,
    entity: str,
    family_ids: Iterable[str | None],
    fields: list[str] | None = None,
    reason: str | None = None,
) -> int:
    """Record a list or search answer: one entry for each family that appeared in it, so the
    trail of a family shows every answer it was in. An answer with no family gets one entry
    without a family (the search itself is kept). Returns how many entries were written."""
    families = list(dict.fromkeys(f for f in family_ids if f))
    return record_each(
        session,
        tables,
        action=action,
        entity=entity,
        targets=[(None, f) for f in families] or [(None, None)],
        fields=fields,
        reason=reason,
    )


def record_each(
    session: Session,
    tables: InfrastructureTables,
    *,
    action: str,
    entity: str,
    targets: Iterable[tuple[str | None, str | None]],
    fields: list[str] | None = None,
    reason: str | None = None,
) -> int:
    """One entry per ``(entity_id, family_id)`` of ``targets``, all in one INSERT: a page of
    50 families costs one round trip, not 50."""
    pairs = list(dict.fromkeys(targets))
    if not pairs:
        return 0
    common = _entry(
        current_principal(),
        action=action,
        entity=entity,
        entity_id=None,
        family_id=None,
        fields=fields,
        reason=reason,
    )
    if len(pairs) == 1:
        entity_id, family_id = pairs[0]
        session.execute(
            tables.audit_log.insert(), {**common, "entity_id": entity_id, "family_id": family_id}
        )
    else:
        session.execute(_insert_from_list(session, tables.audit_log, common, pairs))
    return len(pairs)


def _insert_from_list(
    session: Session, log: Table, common: dict[str, Any], pairs: list[tuple[str | None, str | None]]
) -> Insert:
    """``INSERT INTO audit_log (...) SELECT <the entry's values>, e, f FROM <the pairs>``: the
    pairs go in as one array (PostgreSQL's ``unnest``) or one JSON text (SQLite's
    ``json_each``), so 50 entries cost about what one does; with a bound parameter per value
    they cost three times as much (measured in bench/registry_search.py)."""
    entity_id: ColumnElement[Any]
    family_id: ColumnElement[Any]
    if session.get_bind().dialect.name == "postgresql":
        listed = (
            func.unnest(
                bindparam("entity_ids", [e for e, _ in pairs], type_=ARRAY(String)),
                bindparam("family_ids", [f for _, f in pairs], type_=ARRAY(String)),
            )
            .table_valued("entity_id", "family_id")
            .render_derived()
        )
        entity_id, family_id = listed.c.entity_id, listed.c.family_id
    else:
        listed = func.json_each(bindparam("pairs", json.dumps(pairs), type_=String)).table_valued(
            "value"
        )
        entity_id = func.json_extract(listed.c.value, "$[0]", type_=String)
        family_id = func.json_extract(listed.c.value, "$[1]", type_=String)
    shared = [name for name in common if name not in ("entity_id", "family_id")]
    values = [literal(common[name], type_=log.c[name].type).label(name) for name in shared]
    rows = select(*values, entity_id.label("entity_id"), family_id.label("family_id"))
    return log.insert().from_select([*shared, "entity_id", "family_id"], rows.select_from(listed))


@dataclass(frozen=True)
class AuditFilter:
    """What ``GET /audit`` of every service filters on; ``since`` is inclusive, ``until``
    exclusive, and every other field an exact match."""

    family_id: str | None = None
    actor: str | None = None
    action: str | None = None
    entity: str | None = None
    entity_id: str | None = None
    correlation_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


EXACT_FILTERS = ("family_id", "actor", "action", "entity", "entity_id", "correlation_id")


def audit_query(tables: InfrastructureTables, filters: AuditFilter) -> Select[Any]:
    """The entries matching ``filters``, newest first."""
    log = tables.audit_log
    stmt = select(log).order_by(log.c.at.desc(), log.c.id.desc())
    for name in EXACT_FILTERS:
        value = getattr(filters, name)
        if value is not None:
            stmt = stmt.where(log.c[name] == value)
    if filters.since is not None:
        stmt = stmt.where(log.c.at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(log.c.at < filters.until)
    return stmt


def query_audit(
    session: Session,
    tables: InfrastructureTables,
    *,
    limit: int = 100,
    offset: int = 0,
    **filters: Any,
) -> list[dict[str, Any]]:
    """Entries newest first, filtered as :class:`AuditFilter` names (for code and tests; the
    HTTP API pages the same query)."""
    stmt = audit_query(tables, AuditFilter(**filters))
    stmt = stmt.limit(max(1, min(limit, MAX_QUERY_LIMIT))).offset(max(0, offset))
    return [dict(row) for row in session.execute(stmt).mappings()]
