"""Events the raids service publishes (raid.scheduled and the rest come with the raids issue)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services.raids.models import tables
from shared.messaging.outbox import add_event


def publish(
    session: Session, name: str, data: dict[str, Any], version: int | None = None
) -> dict[str, Any]:
    return add_event(session, tables, name, data, producer="raids", version=version)
