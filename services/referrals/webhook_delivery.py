"""Sending webhook deliveries: claim the due ones, POST each outside any transaction, record
the outcome. Retries back off exponentially with jitter on 5xx, 408, 429, timeouts and
connection errors, up to a limit, then ``failed``; any other answer (4xx, 3xx: redirects are
not followed) fails at once, and so does a URL that the destination rules refuse at send time
(``webhooks.Destinations``: its host now resolves inside, or plain http in production). The POST
goes to an address that was checked, never to what the name resolves to a moment later.

A claim is a lease (``next_attempt_at`` moved past the timeout) taken with ``SKIP LOCKED``, so
parallel workers never send one delivery twice at once, and a worker that dies mid-POST
leaves a delivery that is picked up again when the lease runs out, under the same
``X-Opora-Delivery`` id for the receiver to deduplicate.
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.referrals import webhooks
from services.referrals.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from shared.backoff import backoff_seconds
from shared.config import ConfigError, Settings
from shared.db import transaction, utcnow

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429})
USER_AGENT = "Opora-Webhooks/1"


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_ms: int
    refused: bool = False  # the destination rules refused the URL: not sent, not retried


@dataclass(frozen=True)
class DeliveryPolicy:
    """``REFERRALS_WEBHOOK_MAX_ATTEMPTS`` (default 10), ``REFERRALS_WEBHOOK_BACKOFF_SECONDS``
    (first pause, doubled each time, default 30, at most 6 hours),
    ``REFERRALS_WEBHOOK_TIMEOUT_SECONDS`` (default 10), and where webhooks may point
    (``REFERRALS_WEBHOOK_ALLOW_PRIVATE``, see ``webhooks.Destinations``)."""

    max_attempts: int = 10
    backoff_seconds: float = 30.0
    max_backoff_seconds: float = 6 * 3600.0
    timeout_seconds: float = 10.0
    batch_size: int = 50
    destinations: webhooks.Destinations = field(default_factory=webhooks.Destinations)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, embedded: bool = False) -> DeliveryPolicy:
        try:
            policy = cls(
                max_attempts=int(env.get("REFERRALS_WEBHOOK_MAX_ATTEMPTS") or 10),
                backoff_seconds=float(env.get("REFERRALS_WEBHOOK_BACKOFF_SECONDS") or 30),
                timeout_seconds=float(env.get("REFERRALS_WEBHOOK_TIMEOUT_SECONDS") or 10),
                destinations=webhooks.Destinations.from_env(env, embedded=embedded),
            )
        except ValueError:
            raise ConfigError("REFERRALS_WEBHOOK_* settings must be numbers") from None
        if policy.max_attempts < 1 or policy.backoff_seconds <= 0 or policy.timeout_seconds <= 0:
            raise ConfigError("REFERRALS_WEBHOOK_* settings must be positive")
        return policy

    def backoff(self, attempts: int, rng: Callable[[], float] = random.random) -> dt.timedelta:
        """Full exponential pause after ``attempts`` failures, with 50-100 % jitter so that
        receivers coming back up are not hit by every sender at once."""
        pause = backoff_seconds(
            attempts - 1,
            base=self.backoff_seconds,
            cap=self.max_backoff_seconds,
            jitter=(0.5, 1.0),
            draw=rng(),
        )
        return dt.timedelta(seconds=pause)

    @property
    def lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.timeout_seconds + 30)


def retryable(attempt: Attempt) -> bool:
    code = attempt.status_code
    if attempt.refused:
        return False
    return code is None or code >= 500 or code in RETRYABLE_STATUSES


def _connect(target: webhooks.Target, timeout: float | None) -> socket.socket:
    """A socket to the first of the target's checked addresses that answers."""
    error: OSError = OSError("no address")
    for address in target.addresses:
        try:
            return socket.create_connection((address, target.port), timeout)
        except OSError as exc:
            error = exc
    raise error


class _CheckedHTTP(http.client.HTTPConnection):
    """Connects to the checked addresses, never to what the name resolves to by then."""

    def __init__(self, target: webhooks.Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.target = target

    def connect(self) -> None:
        self.sock = _connect(self.target, self.timeout)


class _CheckedHTTPS(http.client.HTTPSConnection):
    """As ``_CheckedHTTP``, with TLS verified for the URL's host name."""

    def __init__(self, target: webhooks.Target, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self.tls)
        self.target = target

    def connect(self) -> None:
        raw = _connect(self.target, self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.target.host)


def post(url: str, body: bytes, headers: dict[str, str], policy: DeliveryPolicy) -> Attempt:
    """One POST to an address checked just now, no redirects followed; the answer's body is
    read (up to 64 KiB) and dropped."""
    started = time.perf_counter()
    try:
        target = policy.destinations.check(url)
    except webhooks.RefusedDestination as exc:
        return Attempt(None, f"refused: {exc.detail}"[:300], _ms(started), refused=True)
    except webhooks.UnresolvedHost as exc:
        return Attempt(None, exc.detail[:300], _ms(started))
    conn_class = _CheckedHTTPS if target.tls else _CheckedHTTP
    conn = conn_class(target, policy.timeout_seconds)
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(65536)
        return Attempt(response.status, None, _ms(started))
    except TimeoutError:
        return Attempt(None, "timeout", _ms(started))
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:300], _ms(started))
    finally:
        conn.close()


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def claim_due(
    session: Session, policy: DeliveryPolicy, now: dt.datetime
) -> list[tuple[str, str, str, str, bytes]]:
    """The due deliveries with what a POST needs, each leased until ``now + lease``."""
    due = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(policy.batch_size)
        .with_for_update(skip_locked=True)
    ).all()
    claimed = []
    for delivery in due:
        sub = session.get(WebhookSubscription, delivery.subscription_id)
        delivery.next_attempt_at = now + policy.lease
        if sub is None:
            continue
        claimed.append(
            (delivery.id, sub.url, sub.secret_encrypted, delivery.event, webhooks.body_of(delivery))
        )
    return claimed


def record(
    session: Session,
    delivery_id: str,
    attempt: Attempt,
    policy: DeliveryPolicy,
    now: dt.datetime,
    rng: Callable[[], float] = random.random,
) -> WebhookDelivery | None:
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.status != "pending":
        return delivery
    delivery.attempts += 1
    number = len(delivery.log) + 1
    delivery.log.append(
        WebhookAttempt(
            number=number,
            at=now,
            status_code=attempt.status_code,
            duration_ms=attempt.duration_ms,
            error=attempt.error,
        )
    )
    delivery.last_status_code = attempt.status_code
    delivery.last_error = attempt.error
    if attempt.status_code is not None and 200 <= attempt.status_code < 300:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
    elif retryable(attempt) and delivery.attempts < policy.max_attempts:
        delivery.next_attempt_at = now + policy.backoff(delivery.attempts, rng)
    else:
        delivery.status, delivery.next_attempt_at = "failed", None
    return delivery


def deliver_due(
    sessions: sessionmaker[Session],
    settings: Settings,
    policy: DeliveryPolicy,
    *,
    clock: Callable[[], dt.datetime] = utcnow,
    send: Callable[[str, bytes, dict[str, str], DeliveryPolicy], Attempt] = post,
) -> int:
    """One round: returns how many deliveries were attempted."""
    with transaction(sessions) as session:
        claimed = claim_due(session, policy, clock())
    for delivery_id, url, sealed, event, body in claimed:
        timestamp = str(int(clock().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            webhooks.SIGNATURE_HEADER: webhooks.sign(
                webhooks.unseal(settings, sealed), timestamp, body
            ),
            webhooks.TIMESTAMP_HEADER: timestamp,
            webhooks.EVENT_HEADER: event,
            webhooks.DELIVERY_HEADER: delivery_id,
        }
        attempt = send(url, body, headers, policy)
        with transaction(sessions) as session:
            record(session, delivery_id, attempt, policy, clock())
        log.info(
            "webhook delivery %s: %s in %d ms",
            delivery_id,
            attempt.status_code or attempt.error,
            attempt.duration_ms,
        )
    return len(claimed)
