"""The audit trail of reads and writes of a family's personal data: who, when, what, why.

Rows are written in the caller's session, so an entry commits or rolls back with the business
change it records. There is deliberately no function to change or delete an entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
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
INSERT_CHUNK = 500


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
    principal = current_principal()
    entries = [
        _entry(
            principal,
            action=action,
            entity=entity,
            entity_id=entity_id,
            family_id=family_id,
            fields=fields,
            reason=reason,
        )
        for entity_id, family_id in dict.fromkeys(targets)
    ]
    if len(entries) == 1:
        session.execute(tables.audit_log.insert(), entries[0])
        return 1
    # Within the databases' bound-parameter limits (SQLite 32,766, PostgreSQL 65,535) even for
    # an export of thousands; a list page is always one statement.
    for start in range(0, len(entries), INSERT_CHUNK):
        session.execute(tables.audit_log.insert().values(entries[start : start + INSERT_CHUNK]))
    return len(entries)


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
