"""The registry's API as the console uses it: families, cases, intakes, measures."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.console.clients.base import ServiceClient


class RegistryClient(ServiceClient):
    service = "registry"

    def family(self, family_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/families/{family_id}")
        return result

    def families(self, **filters: Any) -> dict[str, Any]:
        """A page of the data bank: ``q`` (names, birth dates), filters, ``sort``, ``page``."""
        result: dict[str, Any] = self.get("/families", **filters)
        return result

    def export_families(self, fmt: str, **filters: Any) -> tuple[bytes, str, str]:
        """The filtered list as a file: (body, content type, Content-Disposition)."""
        answer = self.request("GET", "/families/export", params={"format": fmt, **filters})
        return (
            answer.content,
            answer.headers.get("Content-Type", "application/octet-stream"),
            answer.headers.get("Content-Disposition", "attachment"),
        )

    def check_duplicates(self, report: dict[str, Any]) -> list[dict[str, Any]]:
        """Families in the bank this report may describe, with why they match."""
        result: list[dict[str, Any]] = self.post("/families/duplicates", report)["candidates"]
        return result

    def register_family(self, body: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Enter a family (or, with ``link_to``, add the report to that family)."""
        result: dict[str, Any] = self.post("/families", body, idempotency_key=idempotency_key)
        return result

    def update_family(
        self, family_id: str, body: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Change the family's data (``PATCH /families/{id}``; here its address)."""
        result: dict[str, Any] = self.patch(
            f"/families/{family_id}", body, idempotency_key=idempotency_key
        )
        return result

    def category_history(self, family_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"/families/{family_id}/category")
        return result

    def family_cases(self, family_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"/families/{family_id}/cases")
        return result

    def intakes(self, **filters: Any) -> dict[str, Any]:
        """Accepted signals whose family waits for a coordinator's choice (default: pending)."""
        result: dict[str, Any] = self.get("/intakes", **filters)
        return result

    def intake(self, intake_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/intakes/{intake_id}")
        return result

    def resolve_intake(
        self, intake_id: str, body: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """``{"family_id": ...}`` attaches the signal to that family; ``{"register": true}``."""
        result: dict[str, Any] = self.post(
            f"/intakes/{intake_id}/resolve", body, idempotency_key=idempotency_key
        )
        return result

    def addresses(self, family_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"/families/{family_id}/addresses")
        return result

    def case(self, case_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/cases/{case_id}")
        return result

    def pending_intakes(self, *, district: str | None = None) -> int:
        """Accepted signals whose duplicate candidates wait for a coordinator."""
        return self.count("/intakes", state="pending", district=district)

    def approvals_waiting(self, *, district: str | None = None) -> int:
        """Pending approval requests a coordinator may decide (their own requests left out)."""
        return self.count("/approvals", state="pending", district=district, mine_to_decide="true")

    def overdue_measures(
        self,
        *,
        district: str | None = None,
        lead_specialist: str | None = None,
        agency_id: str | None = None,
        as_of: dt.date | None = None,
    ) -> int:
        """Open measures past their deadline (as of ``as_of``: a later date adds those that fall
        due before it)."""
        return self.count(
            "/measures/overdue",
            district=district,
            lead_specialist=lead_specialist,
            agency_id=agency_id,
            as_of=as_of.isoformat() if as_of else None,
        )

    # --- the case workspace (views/cases.py) ---------------------------------------------

    def case_part(self, case_id: str, part: str) -> Any:
        """A list of the case: problems, strengths, agreements, measures, approvals, leads."""
        return self.get(f"/cases/{case_id}/{part}")

    def workspace(self, case_id: str, *, contacts: int = 50) -> dict[str, Any]:
        """The case with its parts (problems, strengths, agreements, measures, approvals,
        assessments, the newest contacts) and the family's number, in one call."""
        result: dict[str, Any] = self.get(f"/cases/{case_id}/workspace", contacts=contacts)
        return result

    def catalogue(self, name: str) -> list[dict[str, Any]]:
        """A catalogue's active codes with their Russian and English titles."""
        items: list[dict[str, Any]] = self.get(f"/catalogues/{name}")["items"]
        return [item for item in items if item.get("active", True)]

    def case_write(
        self, method: str, path: str, body: Any, *, idempotency_key: str | None = None
    ) -> Any:
        """A write of the workspace (``/cases/<id>/...``, ``/measures/<id>``,
        ``/approvals/<id>/decision``); the form's key makes a double submit harmless."""
        response = self.request(method, path, json=body, idempotency_key=idempotency_key)
        return response.json() if response.content else None

    def approvals_inbox(self, **filters: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/approvals", **filters)
        return result

    # --- break-the-glass (views/access.py) -------------------------------------------------

    def break_glass(
        self, family_id: str, reason: str, minutes: int | None, *, idempotency_key: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.post(
            f"/families/{family_id}/break-glass",
            {"reason": reason, "minutes": minutes},
            idempotency_key=idempotency_key,
        )
        return result

    def glass_limits(self) -> dict[str, int]:
        """The default and the longest duration of an emergency access, in minutes."""
        result: dict[str, int] = self.get("/break-glass/limits")
        return result

    def end_glass(self, family_id: str, grant_id: str, *, idempotency_key: str) -> dict[str, Any]:
        result: dict[str, Any] = self.post(
            f"/families/{family_id}/break-glass/{grant_id}/end", idempotency_key=idempotency_key
        )
        return result

    def grants(self, **filters: Any) -> dict[str, Any]:
        """Emergency accesses: a coordinator's are everyone's, agency staff's their own."""
        result: dict[str, Any] = self.get("/break-glass", **filters)
        return result

    def intake_of_signal(self, signal_id: str) -> dict[str, Any] | None:
        """The intake an accepted signal became (whatever its state), with its candidates."""
        items = self.get("/intakes", signal_id=signal_id, page_size=1)["items"]
        if not items:
            return None
        result: dict[str, Any] = self.get(f"/intakes/{items[0]['id']}")
        return result

    def statistics(self, **filters: Any) -> dict[str, Any]:
        """The yearly table (entered, re-entered, removed, in the bank at year end)."""
        result: dict[str, Any] = self.get("/statistics", **filters)
        return result

    def statistics_png(self, **filters: Any) -> bytes:
        """The same table as a chart (the registry draws it)."""
        return self.request("GET", "/statistics", params={**filters, "format": "png"}).content

    def audit(self, **filters: Any) -> dict[str, Any]:
        """The registry's audit trail: who read or changed which family's data, and when."""
        result: dict[str, Any] = self.get("/audit", **filters)
        return result
