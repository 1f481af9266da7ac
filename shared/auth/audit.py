"""The audit trail of reads and writes of a family's personal data: who, when, what, why.

Rows are written in the caller's session, so an entry commits or rolls back with the business
change it records. There is deliberately no function to change or delete an entry.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.auth.context import current_principal
from shared.db import utcnow
from shared.logging import correlation_id
from shared.tables import InfrastructureTables

READ = "read"
CREATE = "create"
UPDATE = "update"
DELETE = "delete"
EXPORT = "export"
BREAK_GLASS = "break_glass"

MAX_QUERY_LIMIT = 1000


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
    if not action or len(action) > 20:
        raise ValueError("audit action must be 1-20 characters")
    principal = current_principal()
    # The values as parameters of the table's plain INSERT: ``.values()`` would build a new
    # statement for every entry.
    session.execute(
        tables.audit_log.insert(),
        {
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
        },
    )


def record_each(
    session: Session,
    tables: InfrastructureTables,
    *,
    action: str,
    entity: str,
    family_ids: list[str],
    fields: list[str] | None = None,
    reason: str | None = None,
) -> None:
    """One entry per family (e.g. an export of a list), written in one executemany."""
    if not family_ids:
        return
    if not action or len(action) > 20:
        raise ValueError("audit action must be 1-20 characters")
    principal = current_principal()
    common = {
        "at": utcnow(),
        "actor": principal.subject,
        "actor_agency": principal.agency_id,
        "actor_roles": sorted(principal.roles),
        "action": action,
        "entity": entity,
        "fields": list(fields) if fields is not None else None,
        "reason": reason,
        "correlation_id": correlation_id.get(),
    }
    session.execute(
        tables.audit_log.insert(),
        [{**common, "entity_id": fid, "family_id": fid} for fid in family_ids],
    )


def query_audit(
    session: Session,
    tables: InfrastructureTables,
    *,
    family_id: str | None = None,
    actor: str | None = None,
    entity: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Entries newest first, filtered; ``since`` is inclusive, ``until`` exclusive."""
    log = tables.audit_log
    stmt = select(log).order_by(log.c.at.desc(), log.c.id.desc())
    if family_id is not None:
        stmt = stmt.where(log.c.family_id == family_id)
    if actor is not None:
        stmt = stmt.where(log.c.actor == actor)
    if entity is not None:
        stmt = stmt.where(log.c.entity == entity)
    if since is not None:
        stmt = stmt.where(log.c.at >= since)
    if until is not None:
        stmt = stmt.where(log.c.at < until)
    stmt = stmt.limit(max(1, min(limit, MAX_QUERY_LIMIT))).offset(max(0, offset))
    return [dict(row) for row in session.execute(stmt).mappings()]
