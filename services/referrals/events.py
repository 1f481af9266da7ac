"""Events the referrals service publishes."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services.referrals.models import tables
from shared.messaging.outbox import add_event


def publish(
    session: Session, name: str, data: dict[str, Any], version: int | None = None
) -> dict[str, Any]:
    return add_event(session, tables, name, data, producer="referrals", version=version)
