"""The notifications service's API as the console uses it: short links of SMS."""

from __future__ import annotations

from services.console.clients.base import ServiceClient


class NotificationsClient(ServiceClient):
    service = "notifications"

    def short_link_target(self, code: str) -> str | None:
        """Where an SMS's short link ``/r/<code>`` leads, or None for an unknown code."""
        from services.console.clients.base import NotFound

        try:
            response = self.request("GET", f"/r/{code}")
        except NotFound:
            return None
        location = response.headers.get("Location")
        return location if response.status_code in (301, 302, 303, 307, 308) else None
