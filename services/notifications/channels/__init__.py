"""Delivery channels: email (SMTP or a folder) and SMS providers (SMPP, HTTP gateway, test mode).

Built at bootstrap or per job from settings, never at import time; nothing connects until
the first send. SMS providers come from ``NOTIFICATIONS_SMS_PROVIDERS``, comma-separated
URLs in failover order::

    smpp://user:pw@host:2775?source=Opora&rate=20
    https://gw.example/send?token=x&rate=5&callback=https://opora.example/api/...
    test://training

Our own query parameters: ``name`` (stable provider name, stored with each message;
default ``<kind>-<host>``), ``mode=test`` (record instead of sending), ``rate`` (sends a
second), ``timeout`` (seconds), ``max_parts`` (longest SMS accepted, default 10); SMPP:
``source``, ``system_type``, ``enquire_every``, ``receipts=0``; HTTP: ``token`` (sent as a
bearer token), ``callback`` (receipt callback URL). Other query parameters of an HTTP URL
are left on it for the gateway. Nothing configured: one test-mode provider named ``test``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from services.notifications.channels.base import (
    Attachment,
    DeliveryError,
    Email,
    EmailSender,
    PermanentFailure,
    Receipt,
    Sent,
    Sms,
    SmsProvider,
    TemporaryFailure,
)
from services.notifications.channels.email import FolderSender, SmtpSender
from services.notifications.channels.http_gateway import (
    HttpGatewayProvider,
    NotFinal,
    parse_http_receipt,
)
from services.notifications.channels.smpp import SmppProvider
from services.notifications.channels.testmode import TestModeProvider
from shared.config import ConfigError, Settings

ENV_SMS_PROVIDERS = "NOTIFICATIONS_SMS_PROVIDERS"
ENV_EMAIL_MODE = "NOTIFICATIONS_EMAIL_MODE"
_OURS = {
    "name",
    "mode",
    "rate",
    "timeout",
    "max_parts",
    "source",
    "system_type",
    "enquire_every",
    "receipts",
    "token",
    "callback",
}

__all__ = [
    "Attachment",
    "DeliveryError",
    "Email",
    "EmailSender",
    "FolderSender",
    "HttpGatewayProvider",
    "NotFinal",
    "PermanentFailure",
    "Receipt",
    "Sent",
    "SmppProvider",
    "Sms",
    "SmsProvider",
    "SmtpSender",
    "TemporaryFailure",
    "TestModeProvider",
    "build_email_sender",
    "build_sms_providers",
    "parse_http_receipt",
    "parse_sms_provider",
]


def build_email_sender(settings: Settings, env: Mapping[str, str] | None = None) -> EmailSender:
    """SMTP when SMTP_HOST is set, else .eml files in data_dir/mail.

    ``NOTIFICATIONS_EMAIL_MODE=test`` records into the folder even with SMTP_HOST set.
    Port 465 means implicit TLS (SmtpSettings has no separate switch); SMTP_STARTTLS=true
    means STARTTLS; otherwise plain SMTP.
    """
    env = settings.options if env is None else env
    smtp = settings.smtp
    folder = settings.data_dir / "mail"
    if (env.get(ENV_EMAIL_MODE) or "").strip().lower() == "test":
        return FolderSender(folder, smtp.sender, name="test")
    if smtp.host is None:
        return FolderSender(folder, smtp.sender)
    if smtp.port == 465:
        security = "tls"
    elif smtp.starttls:
        security = "starttls"
    else:
        security = "none"
    return SmtpSender(
        smtp.host,
        smtp.port,
        smtp.sender,
        user=smtp.user,
        password=smtp.password,
        security=security,  # type: ignore[arg-type]
    )


def build_sms_providers(
    settings: Settings, env: Mapping[str, str] | None = None
) -> list[SmsProvider]:
    """The SMS providers in failover order (see the module docstring for the URL format)."""
    env = settings.options if env is None else env
    raw = env.get(ENV_SMS_PROVIDERS) or ""
    urls = [part.strip() for part in raw.split(",") if part.strip()]
    folder = settings.data_dir / "sms"
    if not urls:
        return [TestModeProvider("test", folder)]
    providers: list[SmsProvider] = []
    names: set[str] = set()
    for index, url in enumerate(urls, 1):
        provider = parse_sms_provider(url, folder, position=index)
        if provider.name in names:
            raise ConfigError(
                f"{ENV_SMS_PROVIDERS}: provider {index} repeats the name {provider.name!r}; "
                "add name=... to tell them apart"
            )
        names.add(provider.name)
        providers.append(provider)
    return providers


def _number(params: Mapping[str, str], key: str, default: float | None, where: str) -> float | None:
    raw = params.get(key)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {key} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{where}: {key} must be positive, got {raw!r}")
    return value


def _safe_name(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.") or "sms"


def parse_sms_provider(url: str, folder: Path, position: int = 1) -> SmsProvider:
    """One provider from one URL; ConfigError naming the position (never the password)."""
    where = f"{ENV_SMS_PROVIDERS} provider {position}"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = {k: v for k, v in query if k in _OURS}
    kind = {"smpp": "smpp", "http": "http", "https": "http", "test": "test"}.get(scheme)
    if kind is None:
        raise ConfigError(f"{where}: scheme must be smpp, http, https or test")
    name = _safe_name(params.get("name") or f"{kind}-{parts.hostname or 'local'}")
    rate = _number(params, "rate", None, where)
    max_parts = int(_number(params, "max_parts", 10, where) or 10)
    if kind == "test" or (params.get("mode") or "").lower() == "test":
        if kind == "test" and not params.get("name"):
            name = _safe_name(parts.hostname or "test")
        return TestModeProvider(name, folder, rate=rate, max_parts=max_parts)
    if params.get("mode") not in (None, "", "live"):
        raise ConfigError(f"{where}: mode must be 'test' or 'live'")
    if not parts.hostname:
        raise ConfigError(f"{where}: the URL has no host")
    if kind == "smpp":
        if not parts.username:
            raise ConfigError(f"{where}: smpp URLs need user:password@ (the system_id)")
        return SmppProvider(
            parts.hostname,
            parts.port or 2775,
            system_id=unquote(parts.username),
            password=unquote(parts.password or ""),
            system_type=params.get("system_type", ""),
            source=params.get("source") or "Opora",
            name=name,
            rate=rate,
            timeout=_number(params, "timeout", 5.0, where) or 5.0,
            enquire_every=_number(params, "enquire_every", 30.0, where) or 30.0,
            max_parts=max_parts,
            registered_delivery=params.get("receipts", "1") not in ("0", "false", "no"),
        )
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    rest = urlencode([(k, v) for k, v in query if k not in _OURS])
    basic = (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
    return HttpGatewayProvider(
        urlunsplit((scheme, netloc, parts.path or "/", rest, "")),
        name=name,
        token=params.get("token") or None,
        basic_auth=basic,
        callback_url=params.get("callback") or None,
        rate=rate,
        timeout=_number(params, "timeout", 10.0, where) or 10.0,
        max_parts=max_parts,
    )
