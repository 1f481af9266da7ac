"""The console's own settings (``CONSOLE_*``), read once at start-up from ``Settings.options``."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.config import DEFAULT_PORTS, SERVICES, ConfigError, Settings


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str | None = field(repr=False)
    scopes: str


@dataclass(frozen=True)
class ConsoleConfig:
    api_urls: Mapping[str, str]
    """Base URL of each service's API as the console reaches it (not the public URL)."""
    api_timeout: float
    secret_key: str = field(repr=False)
    session_hours: int
    timezone: str
    oidc: OidcSettings | None
    """Production signs people in at the OIDC provider; the embedded mode has a sign-in page
    listing the demo staff instead (the development signer)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsoleConfig:
        options = settings.options
        urls = {
            s: (
                options.get(f"CONSOLE_{s.upper()}_URL") or f"http://127.0.0.1:{DEFAULT_PORTS[s]}"
            ).rstrip("/")
            for s in SERVICES
        }
        secret = options.get("CONSOLE_SECRET_KEY") or ""
        if not secret:
            if not settings.embedded or not settings.jwt_secret:
                raise ConfigError("production mode needs CONSOLE_SECRET_KEY")
            secret = hashlib.sha256(f"{settings.jwt_secret}:console".encode()).hexdigest()
        timezone = options.get("CONSOLE_TIMEZONE") or "Europe/Moscow"
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"CONSOLE_TIMEZONE: unknown time zone {timezone!r}") from exc
        issuer = options.get("CONSOLE_OIDC_ISSUER") or ""
        oidc = None
        if issuer:
            client_id = options.get("CONSOLE_OIDC_CLIENT_ID") or ""
            if not client_id:
                raise ConfigError("CONSOLE_OIDC_ISSUER needs CONSOLE_OIDC_CLIENT_ID")
            oidc = OidcSettings(
                issuer=issuer.rstrip("/"),
                client_id=client_id,
                client_secret=options.get("CONSOLE_OIDC_CLIENT_SECRET") or None,
                scopes=options.get("CONSOLE_OIDC_SCOPES") or "openid profile offline_access",
            )
        elif not settings.embedded:
            raise ConfigError("production mode needs CONSOLE_OIDC_ISSUER (people sign in there)")
        return cls(
            api_urls=urls,
            api_timeout=_number(options, "CONSOLE_API_TIMEOUT_SECONDS", 5.0),
            secret_key=secret,
            session_hours=int(_number(options, "CONSOLE_SESSION_HOURS", 8)),
            timezone=timezone,
            oidc=oidc,
        )


def _number(options: Mapping[str, str], name: str, default: float) -> float:
    raw = options.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be above zero, got {raw!r}")
    return value
