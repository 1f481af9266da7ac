"""The notifications service's API as the console uses it: short links of SMS, and the
providers' callbacks (SMS receipts, email bounces) passed on as they came."""

from __future__ import annotations

import httpx

from services.console.clients.base import NotFound, ServiceClient, ServiceDown


class NotificationsClient(ServiceClient):
    service = "notifications"

    def short_link_target(self, code: str) -> str | None:
        """Where an SMS's short link ``/r/<code>`` leads, or None for an unknown code."""
        try:
            response = self.request("GET", f"/r/{code}")
        except NotFound:
            return None
        location = response.headers.get("Location")
        return location if response.status_code in (301, 302, 303, 307, 308) else None

    def forward_callback(
        self, path: str, query: bytes, body: bytes, content_type: str | None
    ) -> httpx.Response:
        """POST a provider's callback to the same path of the API, query (its signed token)
        and body untouched; the API's answer, whatever its status, goes back to the provider.
        No bearer token: the signed token in the URL is the callback's only credential."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self._correlation_id:
            headers["X-Correlation-ID"] = self._correlation_id
        url = f"{self._base}{path}?{query.decode('latin-1')}" if query else self._base + path
        try:
            response = self._http.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise ServiceDown(self.service, "timeout") from None
        except httpx.TransportError as exc:
            raise ServiceDown(self.service, type(exc).__name__) from None
        if response.status_code >= 500:
            raise ServiceDown(self.service, f"HTTP {response.status_code}")
        return response
