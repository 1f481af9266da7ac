"""Who is making the request: a person with a token or an agency system with an API key."""

from __future__ import annotations

from dataclasses import dataclass

USER = "user"
AGENCY_SYSTEM_KIND = "agency_system"


@dataclass(frozen=True)
class Principal:
    """``name`` is a staff login or display name, never a family member's data."""

    subject: str
    roles: frozenset[str]
    agency_id: str | None
    kind: str = USER
    name: str | None = None

    def has_role(self, *roles: str) -> bool:
        """True when the principal holds any of ``roles``."""
        return not self.roles.isdisjoint(roles)
