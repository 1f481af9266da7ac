"""The principal of the request or job being handled, in a contextvar so domain code needs no
Flask import."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from shared.auth.principal import Principal
from shared.errors import Unauthorized

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "opora_principal", default=None
)


def current_principal() -> Principal:
    principal = _principal.get()
    if principal is None:
        raise Unauthorized("authentication required")
    return principal


def optional_principal() -> Principal | None:
    return _principal.get()


def set_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Set the principal; keep the token and pass it to :func:`reset_principal` when done."""
    return _principal.set(principal)


def reset_principal(token: contextvars.Token[Principal | None]) -> None:
    _principal.reset(token)


@contextlib.contextmanager
def principal_context(principal: Principal) -> Iterator[Principal]:
    token = _principal.set(principal)
    try:
        yield principal
    finally:
        _principal.reset(token)
