"""Raids' rules, free of HTTP and broker. For now: keeping the family read model in order."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from services.raids.models import KnownFamily


def remember_family(session: Session, data: dict[str, Any], occurred_at: dt.datetime) -> bool:
    """Upsert the family snapshot; an older version arriving late changes nothing."""
    known = session.get(KnownFamily, data["family_id"])
    if known is not None and known.family_version >= data["family_version"]:
        return False
    address = data["address"]
    values = {
        "number": data["number"],
        "category": data["category"],
        "district": address["district"],
        "settlement": address["settlement"],
        "address": address,
        "latitude": address.get("latitude"),
        "longitude": address.get("longitude"),
        "display_name": data["display_name"],
        "family_version": data["family_version"],
        "updated_at": occurred_at,
    }
    if known is None:
        session.add(KnownFamily(family_id=data["family_id"], **values))
    else:
        for key, value in values.items():
            setattr(known, key, value)
    return True
