"""The kinds of agencies of the prevention system: one list for every service.

A family's consent (registry) names the kinds of agencies its data may go to, and each agency
of the directory (referrals) has a kind; referrals sends a family's data only where the two
match. With two lists the registry said ``clergy`` where the directory said ``church``, a
consent for one could never match an agency of the other, and kinds known to only one side
(``kindergarten``, ``family_centre``, ``other``) could not be consented to at all. So there is
one list, here, and both services' models, schemas and events use it.

``FORMER_KINDS`` are names earlier releases used: events from a producer not yet upgraded may
still carry them, so event schemas read them as today's kind (``AgencyKind``); nothing new is
stored under a former name (the migrations renamed what was).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import fields, validate

AGENCY_KINDS: tuple[str, ...] = (
    "school",
    "kindergarten",
    "police_pdn",
    "kdn",
    "health",
    "culture",
    "employment",
    "social_protection",
    "family_centre",
    "charity",
    "church",
    "other",
)

FORMER_KINDS: Mapping[str, str] = {"clergy": "church"}


def current_kind(kind: str) -> str:
    """Today's name of ``kind`` (itself unless it is a former name)."""
    return FORMER_KINDS.get(kind, kind)


class AgencyKind(fields.String):
    """An agency kind in an event: one of ``AGENCY_KINDS``, or a former name, read as today's."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=validate.OneOf(AGENCY_KINDS), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return current_kind(super()._deserialize(value, attr, data, **kwargs))
