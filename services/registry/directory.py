"""What the registry knows of the referrals directory: each agency's kind, which a family's
consent names (``access`` decides with it). Learned from the directory's events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from services.registry.models import KnownAgency
from shared.agencies import current_kind
from shared.db import utcnow


def remember_agency(session: Session, data: Mapping[str, Any]) -> KnownAgency:
    """Upsert an agency from a directory snapshot; an older ``agency_version`` changes nothing
    (events may arrive out of order)."""
    agency = session.get(KnownAgency, data["agency_id"])
    if agency is None:
        agency = KnownAgency(id=data["agency_id"], agency_version=0)
        session.add(agency)
    if data["agency_version"] >= agency.agency_version:
        agency.kind = current_kind(data["kind"])
        agency.agency_version = data["agency_version"]
        agency.updated_at = utcnow()
    return agency
