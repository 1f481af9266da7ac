"""One config loader for every service and command.

Everything comes from environment variables with typed defaults. With nothing
set, the defaults give the embedded mode: SQLite files and kombu's file-backed
transport under ``OPORA_DATA_DIR``, so a newcomer needs no servers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

SERVICES: tuple[str, ...] = ("registry", "referrals", "raids", "notifications")
"""The four back-end services: each has a worker, the event bus, demo data and its queues."""

CONSOLE = "console"
APPS: tuple[str, ...] = (*SERVICES, CONSOLE)
"""Everything ``opora web`` serves and ``opora db`` migrates: the services and the console (a web
process with its own small database for sessions, no worker, no events)."""

DEFAULT_PORTS: dict[str, int] = {
    CONSOLE: 8000,
    "registry": 8001,
    "referrals": 8002,
    "raids": 8003,
    "notifications": 8004,
}

ENV_VARS: dict[str, str] = {
    "OPORA_MODE": "`embedded` (default: SQLite, file-backed broker, dev token signer) or `production`",
    "OPORA_DATA_DIR": "where the embedded mode keeps its SQLite files, broker folder and mail (default ./var)",
    "REGISTRY_DATABASE_URL": "SQLAlchemy URL of the registry's database",
    "REFERRALS_DATABASE_URL": "SQLAlchemy URL of the referrals service's database",
    "RAIDS_DATABASE_URL": "SQLAlchemy URL of the raids service's database",
    "NOTIFICATIONS_DATABASE_URL": "SQLAlchemy URL of the notifications service's database",
    "BROKER_URL": "kombu URL of the broker: amqp://user:pass@host:5672/vhost in production",
    "OPORA_BROKER_PREFIX": "prefix of every exchange and queue name (default `opora`)",
    "OPORA_JWT_SECRET": "HS256 secret of the development token signer (embedded mode only)",
    "OPORA_JWKS_URL": "JWKS URL of the OIDC provider (e.g. Keycloak) for RS256 tokens",
    "OPORA_JWT_ISSUER": "expected `iss` of bearer tokens (required in production mode)",
    "OPORA_JWT_AUDIENCE": "expected `aud` of bearer tokens (required in production mode)",
    "OPORA_JWT_MAX_LIFETIME_SECONDS": "longest lifetime (`exp` - `iat`) of a bearer token accepted, in seconds (default 43200 = 12 h)",
    "OPORA_LINK_SECRET": "secret that signs capability links (calendar feeds; embedded mode derives one)",
    "OPORA_LOG_LEVEL": "log level (default INFO)",
    "OPORA_PUBLIC_URL": "base URL of the console, where every link in emails, SMS and calendars points (default: the console's embedded address http://127.0.0.1:8000)",
    "CONSOLE_DATABASE_URL": "SQLAlchemy URL of the console's own database (server-side sessions only)",
    "CONSOLE_REGISTRY_URL": "base URL of the registry API as the console calls it (default http://127.0.0.1:8001)",
    "CONSOLE_REFERRALS_URL": "base URL of the referrals API as the console calls it (default http://127.0.0.1:8002)",
    "CONSOLE_RAIDS_URL": "base URL of the raids API as the console calls it (default http://127.0.0.1:8003)",
    "CONSOLE_NOTIFICATIONS_URL": "base URL of the notifications API as the console calls it (default http://127.0.0.1:8004)",
    "CONSOLE_API_TIMEOUT_SECONDS": "timeout of one console call to a service API (default 5)",
    "CONSOLE_SECRET_KEY": "secret that signs the console's session cookie and CSRF tokens (embedded mode derives one)",
    "CONSOLE_SESSION_HOURS": "hours a console session lasts without activity (default 8)",
    "CONSOLE_OIDC_ISSUER": "issuer URL of the OIDC provider people sign in with (production; e.g. the Keycloak realm)",
    "CONSOLE_OIDC_CLIENT_ID": "the console's client id at the OIDC provider",
    "CONSOLE_OIDC_CLIENT_SECRET": "the console's client secret at the OIDC provider",
    "CONSOLE_OIDC_SCOPES": "scopes the console asks for (default `openid profile offline_access`)",
    "CONSOLE_TIMEZONE": "time zone of dates and times on console pages (default Europe/Moscow)",
    "SMTP_HOST": "SMTP server; unset in the embedded mode writes emails to OPORA_DATA_DIR/mail",
    "SMTP_PORT": "SMTP port (default 25, or 587 with STARTTLS; 465 means implicit TLS)",
    "SMTP_USER": "SMTP login",
    "SMTP_PASSWORD": "SMTP password",
    "SMTP_STARTTLS": "`true` to require STARTTLS",
    "SMTP_FROM": "sender address of notification emails",
    "WEB_CONCURRENCY": "gunicorn worker processes per web service (default 2)",
    "REGISTRY_BREAK_GLASS_MAX_MINUTES": "longest break-the-glass access one may request, in minutes (default 120, 1-1440)",
    "REFERRALS_SIGNAL_SLA_HOURS": "triage deadlines of signals by priority (default red=2,amber=6,green=24)",
    "REFERRALS_SLA": "referral SLA per service code: `code=acknowledge/complete` in working days, comma-separated, `*` for the rest (default `*=3/20`)",
    "REFERRALS_SLA_ESCALATE_AFTER_DAYS": "working days after a referral's overdue reminder before it is escalated to the coordinator (default 2)",
    "REFERRALS_HOLIDAYS": "public holidays (ISO dates, comma-separated) that replace the built-in Russian 2026-2027 list",
    "REFERRALS_WORKDAYS": "weekend dates that are working days (ISO dates, comma-separated)",
    "REFERRALS_SLA_TIMEZONE": "time zone in which working days are counted (default Europe/Moscow)",
    "REFERRALS_LINK_DAYS": "days a signed referral link (for agencies without an account) stays valid (default 14)",
    "REFERRALS_WEBHOOK_MAX_ATTEMPTS": "webhook delivery attempts before it is marked failed (default 10)",
    "REFERRALS_WEBHOOK_BACKOFF_SECONDS": "first webhook retry delay, doubled each attempt with jitter, capped at 6 h (default 30)",
    "REFERRALS_WEBHOOK_TIMEOUT_SECONDS": "timeout of one webhook POST (default 10)",
    "REFERRALS_WEBHOOK_ALLOW_PRIVATE": "`1` lets webhook URLs point to private, loopback, link-local and other non-public addresses and use plain http in production (tests, closed networks); default: public addresses only, https in production",
    "RAIDS_MIN_AGENCIES": "how many different agencies a raid needs at least (default 2)",
    "RAIDS_SOP_REQUIRED_AGENCY_KINDS": "agency kinds one of which must join a raid with an sop family (default police_pdn; empty: no rule)",
    "RAIDS_RECENT_VISIT_DAYS": "warn when a family was visited by another raid within this many days (default 30)",
    "NOTIFICATIONS_SMS_PROVIDERS": "SMS providers in failover order, comma-separated URLs: `smpp://user:pw@host:2775?source=Opora&rate=20`, `https://gateway/send?token=x&rate=5&callback=<url>`; `?mode=test` on any records instead of sending; unset: one test-mode provider writing to OPORA_DATA_DIR/sms",
    "NOTIFICATIONS_EMAIL_MODE": "`test` writes emails to OPORA_DATA_DIR/mail even with SMTP_HOST set (training and staging set-ups)",
    "NOTIFICATIONS_RETENTION_DAYS": "days after which message bodies are purged; the status record and history stay (default 7)",
    "NOTIFICATIONS_CLAIM_TIMEOUT_SECONDS": "seconds a message claimed by a worker may stay `sending` before another run sends it again (the worker died or lost its database mid-send; default 600)",
    "PROMETHEUS_MULTIPROC_DIR": "folder for Prometheus multi-process metrics under gunicorn",
}

EMBEDDED = "embedded"
PRODUCTION = "production"
DEFAULT_PUBLIC_URL = f"http://127.0.0.1:{DEFAULT_PORTS[CONSOLE]}"
"""Every link a service sends opens the console, which serves the pages for people."""

DEFAULT_JWT_MAX_LIFETIME = 12 * 3600


class ConfigError(RuntimeError):
    """A setting is missing or wrong; raised at start-up, never mid-request."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _positive(env: dict[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None
    port: int
    user: str | None
    password: str | None = field(repr=False)
    starttls: bool
    sender: str


@dataclass(frozen=True)
class Settings:
    """The settings of one service process."""

    service: str
    mode: str
    data_dir: Path
    database_url: str
    broker_url: str
    broker_prefix: str
    jwt_secret: str | None = field(repr=False)
    link_secret: str | None = field(repr=False)
    jwks_url: str | None
    jwt_issuer: str | None
    jwt_audience: str | None
    log_level: str
    public_url: str
    smtp: SmtpSettings
    web_concurrency: int
    jwt_max_lifetime: int = DEFAULT_JWT_MAX_LIFETIME
    options: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """The service's own variables (``RAIDS_*`` for raids, ...), read once at start-up: rule
    objects take them from here (``RaidRules.from_env(settings.options)``), never from
    ``os.environ`` mid-request."""

    @property
    def embedded(self) -> bool:
        return self.mode == EMBEDDED

    def replace(self, **changes: object) -> Settings:
        from dataclasses import replace

        return replace(self, **changes)  # type: ignore[arg-type]


def default_broker_url(data_dir: Path) -> str:
    return "filesystem://"


def embedded_broker_options(data_dir: Path) -> dict[str, object]:
    """Transport options of kombu's file-backed transport, shared by all processes."""
    folder = data_dir / "broker"
    for sub in ("queue", "control", "processed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "processed_folder": str(folder / "processed"),
        "polling_interval": 0.1,
    }


def _dev_secret(data_dir: Path) -> str:
    """A random signer secret kept in the data folder, so every embedded process shares it."""
    import secrets

    path = data_dir / "dev-jwt-secret"
    if not path.exists():
        tmp = data_dir / f".dev-jwt-secret.{os.getpid()}"
        tmp.write_text(secrets.token_urlsafe(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic create-if-absent: the first process wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def load_settings(
    service: str, env: dict[str, str] | None = None, *, database_only: bool = False
) -> Settings:
    """Read the settings of ``service`` from ``env`` (default: ``os.environ``).

    ``database_only``: for migrations, which need no broker and no token settings.
    """
    if service not in APPS:
        raise ConfigError(f"unknown service {service!r}; one of {', '.join(APPS)}")
    env = dict(os.environ if env is None else env)
    mode = env.get("OPORA_MODE", EMBEDDED) or EMBEDDED
    if mode not in (EMBEDDED, PRODUCTION):
        raise ConfigError(f"OPORA_MODE must be {EMBEDDED!r} or {PRODUCTION!r}, got {mode!r}")
    data_dir = Path(env.get("OPORA_DATA_DIR") or "var").resolve()

    db_var = f"{service.upper()}_DATABASE_URL"
    database_url = env.get(db_var) or ""
    broker_url = env.get("BROKER_URL") or ""
    jwt_secret = env.get("OPORA_JWT_SECRET") or None
    jwks_url = env.get("OPORA_JWKS_URL") or None

    if mode == EMBEDDED:
        data_dir.mkdir(parents=True, exist_ok=True)
        jwt_secret = jwt_secret or _dev_secret(data_dir)
        database_url = database_url or f"sqlite:///{data_dir / (service + '.db')}"
        broker_url = broker_url or default_broker_url(data_dir)
    else:
        required = [(db_var, database_url)]
        if not database_only and service != CONSOLE:
            required.append(("BROKER_URL", broker_url))
        missing = [name for name, value in required if not value]
        if not database_only and service != CONSOLE:
            # The console checks people's sign-in at its OIDC provider (CONSOLE_OIDC_*).
            if not (jwks_url or jwt_secret):
                missing.append("OPORA_JWKS_URL")
            # A token of another realm or for another client must not open a service.
            missing += [
                name for name in ("OPORA_JWT_ISSUER", "OPORA_JWT_AUDIENCE") if not env.get(name)
            ]
        if missing:
            raise ConfigError("production mode needs " + ", ".join(missing))

    smtp = SmtpSettings(
        host=env.get("SMTP_HOST") or None,
        port=_int(env, "SMTP_PORT", 587 if _bool(env.get("SMTP_STARTTLS")) else 25),
        user=env.get("SMTP_USER") or None,
        password=env.get("SMTP_PASSWORD") or None,
        starttls=_bool(env.get("SMTP_STARTTLS")),
        sender=env.get("SMTP_FROM") or "opora@localhost",
    )
    return Settings(
        service=service,
        mode=mode,
        data_dir=data_dir,
        database_url=database_url,
        broker_url=broker_url,
        broker_prefix=env.get("OPORA_BROKER_PREFIX") or "opora",
        jwt_secret=jwt_secret,
        link_secret=env.get("OPORA_LINK_SECRET")
        or (f"{jwt_secret}:links" if mode == EMBEDDED and jwt_secret else None),
        jwks_url=jwks_url,
        jwt_issuer=env.get("OPORA_JWT_ISSUER") or None,
        jwt_audience=env.get("OPORA_JWT_AUDIENCE") or None,
        log_level=(env.get("OPORA_LOG_LEVEL") or "INFO").upper(),
        public_url=(env.get("OPORA_PUBLIC_URL") or DEFAULT_PUBLIC_URL).rstrip("/"),
        smtp=smtp,
        web_concurrency=_int(env, "WEB_CONCURRENCY", 2),
        jwt_max_lifetime=_positive(env, "OPORA_JWT_MAX_LIFETIME_SECONDS", DEFAULT_JWT_MAX_LIFETIME),
        options=MappingProxyType(
            {k: v for k, v in env.items() if k.startswith(f"{service.upper()}_")}
        ),
    )
