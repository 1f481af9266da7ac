"""Authorisation by role and by agency scope, checked in views before any data is touched."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from shared.auth.context import current_principal
from shared.auth.roles import ADMIN, ALL_ROLES, COORDINATOR
from shared.errors import Forbidden

F = TypeVar("F", bound=Callable[..., Any])

# Where ``require`` records its roles on the view; the app checks them before the request's
# arguments are parsed (shared.http.app), so a caller who may not act gets 403, not field errors.
ROLES_ATTR = "_opora_roles"

# Coordinators keep the whole data bank and admins run the system, so no agency scope binds them.
CROSS_AGENCY_ROLES = (ADMIN, COORDINATOR)


def require(*roles: str) -> Callable[[F], F]:
    """Decorate a view so that only principals holding one of ``roles`` reach it.

    Unknown role names fail at import time, so a typo cannot silently lock everyone out.
    The roles are also recorded on the view (``ROLES_ATTR``; decorators above copy it with
    ``functools.wraps``), and the app checks them before any argument is parsed.
    """
    if not roles:
        raise ValueError("require() needs at least one role")
    unknown = set(roles) - ALL_ROLES
    if unknown:
        raise ValueError(f"unknown roles: {', '.join(sorted(unknown))}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check_roles(roles)
            return view(*args, **kwargs)

        setattr(wrapper, ROLES_ATTR, roles)
        return cast(F, wrapper)

    return decorate


def check_roles(roles: tuple[str, ...]) -> None:
    if not current_principal().has_role(*roles):
        raise Forbidden(f"requires one of: {', '.join(roles)}")


def require_agency(agency_id: str | None) -> None:
    """Refuse access to another agency's data; coordinators and admins see every agency."""
    principal = current_principal()
    if principal.has_role(*CROSS_AGENCY_ROLES):
        return
    if agency_id is None or principal.agency_id != agency_id:
        raise Forbidden("this record belongs to another agency")
