"""SMS through a generic HTTP gateway: JSON POST in, a message id out, receipts by callback.

Request ``{"to", "text", "message_id", "callback_url"?}`` (with ``Idempotency-Key:
message_id`` so a gateway that supports it drops our retries), answer ``{"id": ...}``.
A pooled urllib3 connection is kept alive across sends. 5xx, timeouts, connection errors
and 429 (honouring Retry-After) are TemporaryFailure; any other 4xx is PermanentFailure.
Receipts come back as HTTP callbacks to N3's endpoint, which hands the JSON body to
``parse_http_receipt``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import urllib3

from services.notifications.channels import sms as sms_rules
from services.notifications.channels.base import (
    PermanentFailure,
    Receipt,
    Sent,
    Sms,
    TemporaryFailure,
    utc_now,
)
from services.notifications.channels.ratelimit import TokenBucket

# status words gateways use -> our receipt state
HTTP_RECEIPT_STATES = {
    "delivered": "delivered",
    "delivrd": "delivered",
    "failed": "failed",
    "expired": "failed",
    "deleted": "failed",
    "unknown": "failed",
    "bounced": "bounced",
    "undeliv": "bounced",
    "undelivered": "bounced",
    "undeliverable": "bounced",
    "rejected": "bounced",
    "rejectd": "bounced",
}
NOT_FINAL = {"queued", "accepted", "acceptd", "sent", "enroute", "submitted", "pending"}
_PHONE_LIKE = re.compile(r"\+?\d[\d\s()-]{5,}\d")


class NotFinal(ValueError):
    """A callback about an intermediate state (queued, sent, enroute): nothing to record."""


def _clean_error(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return _PHONE_LIKE.sub("<number>", str(value))[:200]  # gateways echo the number


def parse_http_receipt(
    provider: str, payload: Mapping[str, Any], now: Callable[[], dt.datetime] = utc_now
) -> Receipt:
    """A Receipt from a gateway's callback body ``{"id", "status", "error"?, "at"?}``.

    Raises ValueError (naming the field) when the body is unusable, NotFinal (a ValueError)
    for an intermediate status that N3 should acknowledge and ignore.
    """
    if not isinstance(payload, Mapping):
        raise ValueError("receipt body must be a JSON object")
    message_id = payload.get("id", payload.get("provider_message_id"))
    if not isinstance(message_id, str | int) or message_id == "":
        raise ValueError("receipt field 'id' is missing")
    raw_status = payload.get("status", payload.get("state"))
    if not isinstance(raw_status, str) or not raw_status:
        raise ValueError("receipt field 'status' is missing")
    status = raw_status.strip().lower()
    if status in NOT_FINAL:
        raise NotFinal(f"receipt status {status!r} is not final")
    state = HTTP_RECEIPT_STATES.get(status)
    if state is None:
        raise ValueError(f"receipt field 'status' has an unknown value {raw_status[:20]!r}")
    at = now()
    raw_at = payload.get("at", payload.get("timestamp"))
    if isinstance(raw_at, str) and raw_at:
        try:
            at = dt.datetime.fromisoformat(raw_at.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError("receipt field 'at' is not an ISO 8601 time") from exc
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
    error = None if state == "delivered" else _clean_error(payload.get("error")) or status
    return Receipt(provider, str(message_id), state, error, at)


def retry_after_seconds(
    value: str | None, now: Callable[[], dt.datetime] = utc_now
) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now()).total_seconds())


class HttpGatewayProvider:
    def __init__(
        self,
        url: str,
        *,
        name: str = "http",
        token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        callback_url: str | None = None,
        rate: float | None = None,
        timeout: float = 10.0,
        max_parts: int = 10,
        pool_size: int = 4,
    ) -> None:
        self.name = name
        self.url = url
        self.callback_url = callback_url
        self.max_parts = max_parts
        self.bucket = TokenBucket(rate) if rate else None
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        elif basic_auth:
            self._headers.update(urllib3.make_headers(basic_auth=":".join(basic_auth)))
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=pool_size,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
        )

    def send(self, sms: Sms) -> Sent:
        try:
            to = sms_rules.normalise_phone(sms.to)
        except ValueError as exc:
            raise PermanentFailure(str(exc)) from exc
        if not sms.text:
            raise PermanentFailure("SMS text is empty")
        sms_rules.fit(sms.text, self.max_parts, "refuse")
        body: dict[str, Any] = {"to": to, "text": sms.text, "message_id": sms.message_id}
        if self.callback_url:
            body["callback_url"] = self.callback_url
        if self.bucket is not None:
            self.bucket.acquire()
        headers = dict(self._headers, **{"Idempotency-Key": sms.message_id})
        try:
            response = self._pool.request(
                "POST", self.url, body=json.dumps(body).encode(), headers=headers
            )
        except urllib3.exceptions.NewConnectionError as exc:  # (a ConnectTimeoutError subclass)
            raise TemporaryFailure("SMS gateway unreachable: connection refused") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise TemporaryFailure("SMS gateway timed out") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise TemporaryFailure(f"SMS gateway unreachable: {type(exc).__name__}") from exc
        status = response.status
        if status == 429:
            raise TemporaryFailure(
                "SMS gateway throttled us (429)",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status >= 500 or status == 408:
            raise TemporaryFailure(f"SMS gateway failed ({status})")
        if status >= 400:
            raise PermanentFailure(f"SMS gateway refused the message ({status})")
        if status >= 300:
            raise TemporaryFailure(f"SMS gateway answered {status}")
        try:
            answer = json.loads(response.data or b"null")
            provider_id = answer["id"]
        except (ValueError, TypeError, KeyError) as exc:
            raise TemporaryFailure("SMS gateway answered without a message id") from exc
        return Sent(self.name, (str(provider_id),), segments=sms_rules.segments(sms.text).parts)

    def receipts(self) -> list[Receipt]:
        """Receipts arrive as callbacks to N3's endpoint, never through here."""
        return []

    def close(self) -> None:
        self._pool.clear()
