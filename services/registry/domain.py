"""The registry's rules, free of HTTP and broker: what it takes to enter a family in the data bank."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.orm import Session

from services.registry import events
from services.registry.models import ADDRESS_FIELDS, Family, Member
from shared.errors import RuleViolation


def display_name(members: list[dict[str, Any]]) -> str:
    """How raids and lists name the family: the first adult's surname (or the first member's)."""
    adults = [m for m in members if m["role"] != "child"] or members
    return adults[0]["full_name"].split()[0]


def register_family(session: Session, data: dict[str, Any]) -> Family:
    """Enter a family in the data bank and publish ``registry.family.registered``."""
    members = data["members"]
    if not any(m["role"] == "child" for m in members):
        raise RuleViolation(
            "a family in the data bank has at least one child",
            errors={"members": ["add at least one member with role 'child'"]},
        )
    address = data["address"]
    family = Family(
        number=f"F-{secrets.token_hex(4).upper()}",
        category=data["category"],
        notes=data.get("notes"),
        **{key: address.get(key) for key in ADDRESS_FIELDS},
    )
    family.members = [Member(position=i, **member) for i, member in enumerate(members)]
    session.add(family)
    session.flush()
    events.publish(
        session,
        "registry.family.registered",
        {
            "family_id": family.id,
            "number": family.number,
            "category": family.category,
            "address": {key: address.get(key) for key in ADDRESS_FIELDS},
            "display_name": display_name(members),
            "children_count": sum(1 for m in members if m["role"] == "child"),
            "family_version": family.version,
        },
    )
    return family
