"""Authentication (bearer tokens, API keys), authorisation (roles, agency scope) and audit."""

from shared.auth.context import (
    current_principal,
    optional_principal,
    principal_context,
    reset_principal,
    set_principal,
)
from shared.auth.policy import require, require_agency
from shared.auth.principal import Principal

__all__ = [
    "Principal",
    "current_principal",
    "optional_principal",
    "principal_context",
    "require",
    "require_agency",
    "reset_principal",
    "set_principal",
]
