"""The transactional outbox: events are rows written in the business transaction.

No event leaves for a rolled-back change, and none is lost while the broker is
down: the relay publishes committed rows when it can.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.db import utcnow
from shared.events import build_envelope
from shared.logging import causation_id, current_correlation_id
from shared.tables import InfrastructureTables

NOTIFY_CHANNEL = "opora_outbox"


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
    envelope = build_envelope(
        name,
        data,
        producer=producer,
        version=version,
        correlation_id=current_correlation_id(),
        causation_id=causation_id.get(),
    )
    stage_message(session, tables, envelope, exchange="events", routing_key=name)
    return envelope


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
    now = utcnow()
    session.execute(
        tables.outbox.insert().values(
            event_id=envelope["id"],
            event_type=envelope["type"],
            exchange=exchange,
            routing_key=routing_key,
            headers=headers or {},
            body=json.dumps(envelope, ensure_ascii=False, separators=(",", ":")),
            created_at=now,
            available_at=now,
            attempts=0,
        )
    )
    transaction_id = id(session.get_transaction())
    if (
        session.get_bind().dialect.name == "postgresql"
        and session.info.get("outbox_notified") != transaction_id
    ):
        # Delivered at commit, dropped on rollback: a wake-up hint for the relay, never the truth.
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
        session.info["outbox_notified"] = transaction_id
