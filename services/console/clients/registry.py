"""The registry's API as the console uses it: families, cases, intakes, measures."""

from __future__ import annotations

from typing import Any

from services.console.clients.base import ServiceClient


class RegistryClient(ServiceClient):
    service = "registry"

    def family(self, family_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/families/{family_id}")
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
    ) -> int:
        return self.count(
            "/measures/overdue",
            district=district,
            lead_specialist=lead_specialist,
            agency_id=agency_id,
        )
