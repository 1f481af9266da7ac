"""One typed client per service; views get them from :func:`clients`, bound to the signed-in
person's token. Tests replace :class:`Clients` at this boundary (``app.extensions``)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from services.console.clients.base import (
    ApiError,
    Forbidden,
    NotFound,
    ServiceDown,
    SignInAgain,
    make_http,
)
from services.console.clients.concurrent import Outcome, gather
from services.console.clients.notifications import NotificationsClient
from services.console.clients.raids import RaidsClient
from services.console.clients.referrals import ReferralsClient
from services.console.clients.registry import RegistryClient

__all__ = [
    "ApiError",
    "Clients",
    "Forbidden",
    "NotFound",
    "Outcome",
    "ServiceDown",
    "SignInAgain",
    "gather",
    "make_http",
]


@dataclass(frozen=True)
class Clients:
    registry: RegistryClient
    referrals: ReferralsClient
    raids: RaidsClient
    notifications: NotificationsClient

    @classmethod
    def connect(
        cls,
        http: httpx.Client,
        urls: dict[str, str],
        token: str | None,
        correlation_id: str | None = None,
    ) -> Clients:
        def bind(kind: type, service: str) -> object:
            return kind(http, urls[service], token, correlation_id=correlation_id)

        return cls(
            registry=bind(RegistryClient, "registry"),  # type: ignore[arg-type]
            referrals=bind(ReferralsClient, "referrals"),  # type: ignore[arg-type]
            raids=bind(RaidsClient, "raids"),  # type: ignore[arg-type]
            notifications=bind(NotificationsClient, "notifications"),  # type: ignore[arg-type]
        )
