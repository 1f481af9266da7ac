"""The transactional outbox: events are rows written in the business transaction.

No event leaves for a rolled-back change, and none is lost while the broker is
down: the relay publishes committed rows when it can.

Staging costs one statement: the rows go in one INSERT, and on PostgreSQL the first rows of a
transaction carry the relay's wake-up (``pg_notify``) in that same statement when there is one
row, in a statement of their own after a batch.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, bindparam, func, select, text
from sqlalchemy.orm import Session

from shared.db import utcnow
from shared.events import build_envelope
from shared.logging import causation_id, current_correlation_id
from shared.tables import InfrastructureTables

NOTIFY_CHANNEL = "opora_outbox"
_NOTIFIED = "outbox_notified"
_ROW_COLUMNS = (
    "event_id",
    "event_type",
    "exchange",
    "routing_key",
    "headers",
    "body",
    "created_at",
    "available_at",
    "attempts",
)


def add_event(
    session: Session,
    tables: InfrastructureTables,
    name: str,
    data: dict[str, Any],
    *,
    producer: str,
    version: int | None = None,
) -> dict[str, Any]:
    """Validate and stage one domain event; it is published once the transaction commits."""
    envelope = _envelope(name, data, producer, version)
    _stage(session, tables.outbox, [_row(envelope, "events", name, None)])
    return envelope


def add_events(
    session: Session,
    tables: InfrastructureTables,
    events: Iterable[tuple[str, dict[str, Any]]],
    *,
    producer: str,
) -> list[dict[str, Any]]:
    """Validate and stage several events (each its type's latest version) in one INSERT."""
    envelopes = [_envelope(name, data, producer, None) for name, data in events]
    _stage(session, tables.outbox, [_row(e, "events", e["type"], None) for e in envelopes])
    return envelopes


def stage_message(
    session: Session,
    tables: InfrastructureTables,
    envelope: dict[str, Any],
    *,
    exchange: str,
    routing_key: str,
    headers: dict[str, Any] | None = None,
) -> None:
    """Stage any message (an event, or a direct send such as an agency's inbox) in the outbox."""
    _stage(session, tables.outbox, [_row(envelope, exchange, routing_key, headers)])


def _envelope(
    name: str, data: dict[str, Any], producer: str, version: int | None
) -> dict[str, Any]:
    return build_envelope(
        name,
        data,
        producer=producer,
        version=version,
        correlation_id=current_correlation_id(),
        causation_id=causation_id.get(),
    )


def _row(
    envelope: dict[str, Any], exchange: str, routing_key: str, headers: dict[str, Any] | None
) -> dict[str, Any]:
    now = utcnow()
    return {
        "event_id": envelope["id"],
        "event_type": envelope["type"],
        "exchange": exchange,
        "routing_key": routing_key,
        "headers": headers or {},
        "body": json.dumps(envelope, ensure_ascii=False, separators=(",", ":")),
        "created_at": now,
        "available_at": now,
        "attempts": 0,
    }


def _stage(session: Session, outbox: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    # Delivered at commit, dropped on rollback: a wake-up hint for the relay, never the truth.
    wake = _first_in_transaction(session)
    if wake and len(rows) == 1:
        session.execute(_insert_and_wake(outbox), rows[0])
        return
    session.execute(outbox.insert(), rows)
    if wake:
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


def _first_in_transaction(session: Session) -> bool:
    """On PostgreSQL, whether this transaction has yet to wake the relay (then it will)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    transaction_id = id(session.get_transaction())
    if session.info.get(_NOTIFIED) == transaction_id:
        return False
    session.info[_NOTIFIED] = transaction_id
    return True


@functools.cache
def _insert_and_wake(outbox: Table) -> Any:
    """``INSERT INTO outbox (..) SELECT :event_id, .. FROM (SELECT pg_notify(..)) AS wake``."""
    columns = [outbox.c[name] for name in _ROW_COLUMNS]
    wake = select(func.pg_notify(NOTIFY_CHANNEL, "")).subquery("wake")
    values = select(*(bindparam(c.name, type_=c.type) for c in columns)).select_from(wake)
    return outbox.insert().from_select(columns, values)
