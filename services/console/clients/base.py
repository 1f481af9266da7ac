"""What every service client shares: the person's bearer token, a short timeout, problem+json
turned into exceptions, and a service that is down turned into :class:`ServiceDown`.

httpx rather than requests: one ``httpx.Client`` is safe to share between threads (the pages
that call several services at once use it from a pool), its timeouts are set per phase
(connect/read) in one object, and its API is typed, so mypy checks the clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ApiError(Exception):
    """A service refused the call (4xx) with a problem; ``errors`` maps field paths to messages."""

    def __init__(
        self,
        service: str,
        status: int,
        title: str,
        detail: str | None = None,
        errors: Mapping[str, list[str]] | None = None,
    ) -> None:
        super().__init__(f"{service}: {status} {title}")
        self.service = service
        self.status = status
        self.title = title
        self.detail = detail
        self.errors: dict[str, list[str]] = {k: list(v) for k, v in (errors or {}).items()}


class NotFound(ApiError):
    pass


class Forbidden(ApiError):
    pass


class SignInAgain(ApiError):
    """401: the token expired or was revoked; the console sends the person to sign in."""


class ServiceDown(Exception):
    """The service did not answer in time, refused the connection, or said it is unavailable
    (5xx). Pages show a message in the panel this service feeds, never a 500 page."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service} unavailable: {reason}")
        self.service = service
        self.reason = reason


def make_http(timeout: float) -> httpx.Client:
    """The app's one connection pool to the services; clients borrow it per request."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        follow_redirects=False,
        headers={"User-Agent": "opora-console"},
    )


class ServiceClient:
    """Base of one service's client: subclasses add typed methods over :meth:`get` etc."""

    service = ""

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        token: str | None,
        *,
        correlation_id: str | None = None,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._token = token
        self._correlation_id = correlation_id

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._correlation_id:
            headers["X-Correlation-ID"] = self._correlation_id
        headers.update(extra or {})
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        accept: str | None = None,
    ) -> httpx.Response:
        """The raw answer of a call that succeeded (2xx/3xx); errors are raised as exceptions."""
        extra = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if accept:
            extra["Accept"] = accept
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            response = self._http.request(
                method, self._base + path, params=clean, json=json, headers=self._headers(extra)
            )
        except httpx.TimeoutException:
            raise ServiceDown(self.service, "timeout") from None
        except httpx.TransportError as exc:
            raise ServiceDown(self.service, type(exc).__name__) from None
        if response.status_code >= 500:
            raise ServiceDown(self.service, f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise _api_error(self.service, response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        response = self.request("POST", path, json=body, idempotency_key=idempotency_key)
        return response.json() if response.content else None

    def put(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        response = self.request("PUT", path, json=body, idempotency_key=idempotency_key)
        return response.json() if response.content else None

    def patch(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        response = self.request("PATCH", path, json=body, idempotency_key=idempotency_key)
        return response.json() if response.content else None

    def count(self, path: str, **params: Any) -> int:
        """How many items a list holds (the ``total`` of a one-item page)."""
        page = self.get(path, page=1, page_size=1, **params)
        return int(page.get("total", 0))


def _api_error(service: str, response: httpx.Response) -> ApiError:
    body: dict[str, Any] = {}
    if response.headers.get("Content-Type", "").startswith(
        (PROBLEM_MEDIA_TYPE, "application/json")
    ):
        try:
            parsed = response.json()
        except ValueError:
            parsed = {}
        body = parsed if isinstance(parsed, dict) else {}
    errors = body.get("errors") if isinstance(body.get("errors"), dict) else {}
    kind: type[ApiError] = {401: SignInAgain, 403: Forbidden, 404: NotFound}.get(
        response.status_code, ApiError
    )
    return kind(
        service,
        response.status_code,
        str(body.get("title") or response.reason_phrase),
        str(body["detail"]) if body.get("detail") else None,
        {
            str(k): [str(m) for m in v] if isinstance(v, list) else [str(v)]
            for k, v in (errors or {}).items()
        },
    )
