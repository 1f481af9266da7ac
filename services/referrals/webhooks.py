"""Webhook subscriptions of agencies: which referral events go to which URL, signed with a
secret that is shown once.

The secret is stored **encrypted**, not hashed: the sender needs the secret itself to compute
HMAC-SHA256 for every delivery, and a hash cannot sign. The key is derived (HKDF-SHA256) from
``OPORA_LINK_SECRET`` (or, failing that, the JWT secret), so a stolen database alone yields
no secrets; rotating that server secret means rotating the webhook secrets too. Only the last
four characters (``secret_hint``) are kept in clear, so an admin can tell secrets apart.

How a receiver verifies a delivery (``X-Opora-Signature: sha256=<hex>``)::

    import hashlib, hmac, time

    def verify(secret: str, headers, body: bytes, tolerance=300) -> bool:
        timestamp = headers["X-Opora-Timestamp"]
        if abs(time.time() - int(timestamp)) > tolerance:
            return False  # replayed or badly delayed
        expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        return hmac.compare_digest("sha256=" + expected, headers["X-Opora-Signature"])

then deduplicate on ``X-Opora-Delivery`` (the same across retries of one delivery).

Where a webhook may point (``Destinations``): a subscription's URL is checked when it is made or
changed, and again at every send, on the addresses its host resolves to *then*; the POST goes
to an address so checked (webhook_delivery.py), so a name that resolved to a public address for
the check and to an inside one a second later (DNS rebinding) reaches nothing inside. Refused:
any address that is not global unicast (private, loopback, link-local such as the cloud
metadata address 169.254.169.254, shared CGNAT, multicast, reserved, unspecified; IPv4 and
IPv6, IPv4 inside IPv6 by what it embeds). In production mode the URL must be https, since the
payload is a referral about a family. ``REFERRALS_WEBHOOK_ALLOW_PRIVATE=1`` lifts both rules,
for tests and closed networks whose agencies' systems have only inside addresses; the embedded
mode takes plain http too, for a receiver on the developer's machine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.referrals.models import (
    Agency,
    Referral,
    WebhookDelivery,
    WebhookSubscription,
)
from shared.auth import sealing
from shared.config import ConfigError, Settings
from shared.db import new_id, utcnow
from shared.errors import Conflict, NotFound, RuleViolation

# What a subscription may ask for: the referral events that concern the receiving agency.
EVENT_TYPES = (
    "referrals.referral.status_changed",
    "referrals.referral.claimed",
    "referrals.referral.commented",
    "referrals.referral.overdue",
)
SECRET_PREFIX = "whsec_"
SEALED_PURPOSE = "webhook-secrets"  # the HKDF info the stored secrets were sealed under
SIGNATURE_HEADER = "X-Opora-Signature"
TIMESTAMP_HEADER = "X-Opora-Timestamp"
EVENT_HEADER = "X-Opora-Event"
DELIVERY_HEADER = "X-Opora-Delivery"
ALLOW_PRIVATE = "REFERRALS_WEBHOOK_ALLOW_PRIVATE"
FLAGS = {"1": True, "true": True, "yes": True, "on": True}
FLAGS |= dict.fromkeys(("", "0", "false", "no", "off"), False)


# --- where a webhook may point -----------------------------------------------------------------


class RefusedDestination(RuleViolation):
    """The URL points somewhere a webhook may not go; no retry changes that."""

    code = "webhook-url-refused"


class UnresolvedHost(RuleViolation):
    """The host name does not resolve (now): a delivery tries again later."""

    code = "webhook-host-unresolved"


@dataclass(frozen=True)
class Target:
    """A checked URL: the POST goes to one of ``addresses``, named ``host`` (Host, SNI)."""

    tls: bool
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def is_public(address: str) -> bool:
    """A global unicast address; an IPv4 address carried in IPv6 is judged by itself."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        carried = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if any(v4 is not None for v4 in carried):
            return all(is_public(str(v4)) for v4 in carried if v4 is not None)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


@dataclass(frozen=True)
class Destinations:
    """Where webhooks may point (see the module's docstring): ``allow_private`` is
    ``REFERRALS_WEBHOOK_ALLOW_PRIVATE``; ``https_only`` holds in production mode unless it."""

    allow_private: bool = False
    https_only: bool = True
    resolve: Callable[..., list[Any]] = field(default=socket.getaddrinfo, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, embedded: bool = False) -> Destinations:
        raw = (env.get(ALLOW_PRIVATE) or "").strip().lower()
        if raw not in FLAGS:
            raise ConfigError(f"{ALLOW_PRIVATE} must be 1 or 0, got {raw!r}")
        return cls(allow_private=FLAGS[raw], https_only=not (FLAGS[raw] or embedded))

    @classmethod
    def of(cls, settings: Settings) -> Destinations:
        return cls.from_env(settings.options, embedded=settings.embedded)

    def check(self, url: str) -> Target:
        """The URL's target with the addresses its host resolves to now, all of them allowed;
        raises RefusedDestination or UnresolvedHost naming ``url``."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _refused("an http(s) URL with a host")
        if self.https_only and parts.scheme != "https":
            raise _refused("https only: a webhook carries a referral about a family")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise _refused("the port is not a number from 1 to 65535") from None
        try:
            found = self.resolve(parts.hostname, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            found = []
        addresses = tuple(dict.fromkeys(str(info[4][0]) for info in found))
        if not addresses:
            raise UnresolvedHost(
                "the webhook's host name does not resolve",
                errors={"url": ["the host name does not resolve"]},
            )
        if not self.allow_private and not all(is_public(a) for a in addresses):
            raise _refused(
                "the host is or resolves to a private, loopback, link-local or otherwise"
                " non-public address"
            )
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Target(parts.scheme == "https", parts.hostname, port, path, addresses)


def _refused(why: str) -> RefusedDestination:
    return RefusedDestination(f"the webhook URL is refused: {why}", errors={"url": [why]})


# --- secrets -----------------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def seal(settings: Settings, secret: str) -> str:
    return sealing.seal(settings, SEALED_PURPOSE, secret)


def unseal(settings: Settings, sealed: str) -> str:
    return sealing.unseal(settings, SEALED_PURPOSE, sealed)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


# --- subscriptions -----------------------------------------------------------------------------


def get_subscription(session: Session, agency_id: str, subscription_id: str) -> WebhookSubscription:
    """Another agency's subscription is "not found", like its referrals."""
    sub = session.get(WebhookSubscription, subscription_id)
    if sub is None or sub.agency_id != agency_id:
        raise NotFound(f"agency {agency_id} has no webhook {subscription_id}")
    return sub


def _set_secret(settings: Settings, sub: WebhookSubscription) -> str:
    secret = new_secret()
    sub.secret_encrypted = seal(settings, secret)
    sub.secret_hint = "…" + secret[-4:]
    return secret


def create_subscription(
    session: Session,
    settings: Settings,
    agency: Agency,
    data: dict[str, Any],
    *,
    by: str,
    now: dt.datetime,
) -> tuple[WebhookSubscription, str]:
    """The new subscription and its secret, which is readable this once only."""
    Destinations.of(settings).check(data["url"])
    sub = WebhookSubscription(
        id=new_id(),
        agency_id=agency.id,
        url=data["url"],
        events=sorted(set(data["events"])),
        active=data.get("active", True),
        created_by=by,
        created_at=now,
        updated_at=now,
    )
    secret = _set_secret(settings, sub)
    session.add(sub)
    session.flush()
    return sub, secret


def update_subscription(
    session: Session,
    destinations: Destinations,
    sub: WebhookSubscription,
    data: dict[str, Any],
    now: dt.datetime,
) -> WebhookSubscription:
    if "url" in data:
        destinations.check(data["url"])
        sub.url = data["url"]
    if "events" in data:
        sub.events = sorted(set(data["events"]))
    if "active" in data:
        sub.active = data["active"]
    sub.updated_at = now
    return sub


def rotate_secret(
    session: Session, settings: Settings, sub: WebhookSubscription, now: dt.datetime
) -> str:
    """A new secret at once; deliveries still pending are signed with it when they go."""
    secret = _set_secret(settings, sub)
    sub.secret_rotated_at = now
    sub.updated_at = now
    return secret


# --- deliveries --------------------------------------------------------------------------------


def referral_view(referral: Referral) -> dict[str, Any]:
    """What the referral carries, and nothing of the family file."""

    def iso(moment: dt.datetime | dt.date | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {
        "id": referral.id,
        "number": referral.number,
        "family_id": referral.family_id,
        "family_number": referral.family_number,
        "district": referral.district,
        "agency_id": referral.agency_id,
        "service_code": referral.service_code,
        "reason": referral.reason,
        "urgency": referral.urgency,
        "deadline": iso(referral.deadline),
        "contact": dict(referral.contact or {}),
        "status": referral.status,
        "status_reason": referral.status_reason,
        "outcome": referral.outcome,
        "acknowledge_due_at": iso(referral.acknowledge_due_at),
        "due_at": iso(referral.due_at),
        "version": referral.version,
    }


def enqueue(
    session: Session,
    agency: Agency,
    referral: Referral,
    event_name: str,
    data: dict[str, Any],
    *,
    now: dt.datetime | None = None,
) -> list[WebhookDelivery]:
    """One delivery per active subscription of the agency that asked for this event."""
    now = now or utcnow()
    subs = session.scalars(
        select(WebhookSubscription).where(
            WebhookSubscription.agency_id == agency.id, WebhookSubscription.active.is_(True)
        )
    ).all()
    event_id = new_id()
    made = []
    for sub in subs:
        if event_name not in sub.events:
            continue
        delivery_id = new_id()
        delivery = WebhookDelivery(
            id=delivery_id,
            subscription_id=sub.id,
            agency_id=agency.id,
            event=event_name,
            event_id=event_id,
            referral_id=referral.id,
            payload={
                "id": delivery_id,
                "event": event_name,
                "created_at": now.isoformat(),
                "data": data,
                "referral": referral_view(referral),
            },
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(delivery)
        made.append(delivery)
    return made


def body_of(delivery: WebhookDelivery) -> bytes:
    return json.dumps(
        delivery.payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True
    ).encode()


def get_delivery(session: Session, agency_id: str, delivery_id: str) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.agency_id != agency_id:
        raise NotFound(f"agency {agency_id} has no webhook delivery {delivery_id}")
    return delivery


def redeliver(delivery: WebhookDelivery, now: dt.datetime) -> WebhookDelivery:
    """Send again, same id (the receiver deduplicates), with a fresh budget of attempts."""
    if delivery.status == "pending":
        raise Conflict("the delivery is still pending; it is retried on its own")
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.delivered_at = None
    return delivery
