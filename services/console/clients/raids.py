"""The raids service's API as the console uses it: raids and calendars."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from services.console.clients.base import ServiceClient


class RaidsClient(ServiceClient):
    service = "raids"

    def raids(self, **filters: Any) -> dict[str, Any]:
        """A page of raids (``GET /raids``): filters ``starts_from``, ``starts_until``,
        ``status``, ``district``, ``person_id``, ``page``, ``page_size``."""
        return dict(self.get("/raids", **{k: v for k, v in filters.items() if v is not None}))

    def raids_on(self, day: dt.date, *, person_id: str | None = None) -> int:
        """Raids (not cancelled or completed ones) on ``day``, of ``person_id`` if given."""
        return sum(
            self.count(
                "/raids",
                status=status,
                starts_from=day.isoformat(),
                starts_until=day.isoformat(),
                person_id=person_id,
            )
            for status in ("planned", "confirmed")
        )

    def raid_ics(self, raid_id: str) -> httpx.Response:
        return self.request("GET", f"/raids/{raid_id}.ics", accept="text/calendar")

    def person_calendar(self, person_id: str, token: str) -> httpx.Response:
        """A person's calendar feed, opened by its signed link (no sign-in: calendar apps)."""
        return self.request(
            "GET",
            f"/people/{person_id}/calendar.ics",
            params={"token": token},
            accept="text/calendar",
        )
