"""HTTP for the fault suite's parties: JSON calls that are sent again, with the same
Idempotency-Key, until the system answers, and the bearer tokens of the development signer.

A call is sent again after a connection error, a timeout, a 5xx or 429, or a 409 of the generic
``conflict`` type (two first requests with one key at once: the second is refused and its retry
gets the first one's answer). Any other answer is final.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import urllib3

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONFLICT_TYPE = "/problems/conflict"
# Production mode requires and checks them (OPORA_JWT_ISSUER, OPORA_JWT_AUDIENCE).
ISSUER = "https://sso.chaos.test/realms/opora"
AUDIENCE = "opora"


class CommandFailed(RuntimeError):
    """A call was refused (a 4xx that no retry changes) or never answered before the deadline."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    attempts: int
    replayed: bool
    troubles: tuple[str, ...]


class Http:
    """JSON over HTTP with retries that keep the Idempotency-Key."""

    def __init__(self, urls: Mapping[str, str], *, give_up_after: float = 120.0) -> None:
        self.urls = dict(urls)
        self.give_up_after = give_up_after
        self.pool = urllib3.PoolManager(
            num_pools=8, maxsize=16, retries=False, timeout=urllib3.Timeout(connect=3, read=30)
        )
        self.troubles: Counter[str] = Counter()
        self._lock = threading.Lock()

    def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        auth: Mapping[str, str],
        body: Any = None,
        key: str | None = None,
        correlation: str | None = None,
    ) -> Answer:
        headers = {"Content-Type": "application/json", **auth}
        if key:
            headers["Idempotency-Key"] = key
        if correlation:
            headers["X-Correlation-ID"] = correlation
        payload = None if body is None else json.dumps(body).encode()
        deadline = time.monotonic() + self.give_up_after
        troubles: list[str] = []
        pause = 0.2
        attempt = 0
        while True:
            attempt += 1
            trouble = None
            try:
                response = self.pool.request(
                    method, self.urls[service] + path, body=payload, headers=headers
                )
            except urllib3.exceptions.HTTPError as exc:
                trouble = type(exc).__name__
            else:
                answer = response.json() if response.data else None
                retry = response.status in RETRY_STATUSES or (
                    response.status == 409
                    and isinstance(answer, dict)
                    and str(answer.get("type", "")).endswith(CONFLICT_TYPE)
                )
                if not retry:
                    return Answer(
                        response.status,
                        answer,
                        attempt,
                        response.headers.get("Idempotent-Replayed") == "true",
                        tuple(troubles),
                    )
                trouble = f"HTTP {response.status}"
            troubles.append(trouble)
            with self._lock:
                self.troubles[trouble] += 1
            if time.monotonic() + pause > deadline:
                raise CommandFailed(
                    f"{method} {service}{path}: no answer in {self.give_up_after:.0f}s "
                    f"after {attempt} attempts ({', '.join(troubles[-3:])})"
                )
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def expect(self, status: int, answer: Answer, what: str) -> Any:
        if answer.status != status:
            raise CommandFailed(f"{what}: HTTP {answer.status} {answer.body}")
        return answer.body


class Tokens:
    """HS256 bearer tokens of the development signer (accepted in production mode with
    OPORA_JWT_SECRET set, as the tests run it), with the issuer and audience production
    requires."""

    def __init__(self, secret: str, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.secret = secret
        self.issuer = issuer
        self.audience = audience

    def bearer(self, subject: str, role: str, agency: str | None = None) -> dict[str, str]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": subject,
            "roles": [role],
            "iat": now,
            "exp": now + 7200,
            "iss": self.issuer,
            "aud": self.audience,
        }
        if agency:
            claims["agency"] = agency
        return {"Authorization": "Bearer " + jwt.encode(claims, self.secret, algorithm="HS256")}
