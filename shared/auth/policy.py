"""Authorisation by role and by agency scope, checked in views before any data is touched."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from shared.auth.context import current_principal
from shared.auth.roles import ADMIN, ALL_ROLES, COORDINATOR
from shared.errors import Forbidden

F = TypeVar("F", bound=Callable[..., Any])

# Coordinators keep the whole data bank and admins run the system, so no agency scope binds them.
CROSS_AGENCY_ROLES = (ADMIN, COORDINATOR)


def require(*roles: str) -> Callable[[F], F]:
    """Decorate a view so that only principals holding one of ``roles`` reach it.

    Unknown role names fail at import time, so a typo cannot silently lock everyone out.
    """
    if not roles:
        raise ValueError("require() needs at least one role")
    unknown = set(roles) - ALL_ROLES
    if unknown:
        raise ValueError(f"unknown roles: {', '.join(sorted(unknown))}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_principal().has_role(*roles):
                raise Forbidden(f"requires one of: {', '.join(roles)}")
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def require_agency(agency_id: str | None) -> None:
    """Refuse access to another agency's data; coordinators and admins see every agency."""
    principal = current_principal()
    if principal.has_role(*CROSS_AGENCY_ROLES):
        return
    if agency_id is None or principal.agency_id != agency_id:
        raise Forbidden("this record belongs to another agency")
