"""The referrals service's API as the console uses it: the directory, signals, referrals."""

from __future__ import annotations

from typing import Any

from services.console.clients.base import ServiceClient

AWAITING_ANSWER = ("requested", "received")
"""Referral statuses in which the receiving agency has not answered yet."""


class ReferralsClient(ServiceClient):
    service = "referrals"

    def agencies(self) -> list[dict[str, Any]]:
        """The whole directory (a district has tens of agencies, never thousands)."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.get("/agencies", page=page, page_size=200)
            items.extend(answer["items"])
            if page >= int(answer.get("pages") or 1):
                return items
            page += 1

    def agency(self, agency_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/agencies/{agency_id}")
        return result

    def new_signals(self, *, district: str | None = None) -> list[dict[str, Any]]:
        """The triage queue, earliest deadline first (its first 200)."""
        answer = self.get("/signals", status="new", district=district, page_size=200)
        items: list[dict[str, Any]] = answer["items"]
        return items

    def referrals_awaiting(self, agency_id: str) -> int:
        """Referrals to ``agency_id`` it has not accepted or refused yet."""
        return sum(
            self.count("/referrals", agency_id=agency_id, status=status)
            for status in AWAITING_ANSWER
        )

    def overdue_referrals(self, *, district: str | None = None) -> tuple[int, int]:
        """(overdue, escalated): referrals past their SLA in the district, and those of them
        already escalated to the coordinator (two counts, no list read)."""
        overdue = self.count("/referrals/overdue", district=district)
        escalated = self.count("/referrals/overdue", district=district, escalated="true")
        return overdue, escalated

    def referrals_of_measures(self, measure_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The referrals made from these plan measures, by measure id (one call per 100)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(measure_ids), 100):
            chunk = measure_ids[start : start + 100]
            answer = self.get("/referrals", measure_id=chunk, page_size=200)
            for item in answer["items"]:
                found[item["measure_id"]] = item
        return found

    def referral(self, referral_id: str) -> dict[str, Any]:
        """One referral with its status history and comment thread."""
        result: dict[str, Any] = self.get(f"/referrals/{referral_id}")
        return result

    def family_referrals(self, family_id: str) -> list[dict[str, Any]]:
        """The referrals made for a family (newest change first), as far as one may see them."""
        result: list[dict[str, Any]] = self.get("/referrals", family_id=family_id, page_size=200)[
            "items"
        ]
        return result

    def referrals(self, **filters: Any) -> dict[str, Any]:
        """A page of referrals (an agency sees only those addressed to it)."""
        result: dict[str, Any] = self.get("/referrals", **filters)
        return result

    def overdue(self, **filters: Any) -> dict[str, Any]:
        """Coordinators' view: referrals not acknowledged or not completed in time."""
        result: dict[str, Any] = self.get("/referrals/overdue", **filters)
        return result

    def transition(
        self, referral_id: str, body: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.post(
            f"/referrals/{referral_id}/transitions", body, idempotency_key=idempotency_key
        )
        return result

    def claim(self, referral_id: str, *, idempotency_key: str) -> dict[str, Any]:
        result: dict[str, Any] = self.post(
            f"/referrals/{referral_id}/claim", idempotency_key=idempotency_key
        )
        return result

    def comment(self, referral_id: str, body: str, *, idempotency_key: str) -> dict[str, Any]:
        result: dict[str, Any] = self.post(
            f"/referrals/{referral_id}/comments", {"body": body}, idempotency_key=idempotency_key
        )
        return result

    def by_link(self, referral_id: str, token: str) -> dict[str, Any]:
        """What a signed answer link shows (no account: the token is the sign-in)."""
        result: dict[str, Any] = self.get(f"/referrals/{referral_id}/respond", token=token)
        return result

    def answer_by_link(self, referral_id: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.request(
            "POST", f"/referrals/{referral_id}/respond", params={"token": token}, json=body
        )
        result: dict[str, Any] = response.json()
        return result

    def signals(self, **filters: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/signals", **filters)
        return result

    def signal(self, signal_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/signals/{signal_id}")
        return result

    def accept_signal(
        self, signal_id: str, body: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.post(
            f"/signals/{signal_id}/accept", body, idempotency_key=idempotency_key
        )
        return result

    def dismiss_signal(
        self, signal_id: str, reason: str, *, idempotency_key: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.post(
            f"/signals/{signal_id}/dismiss", {"reason": reason}, idempotency_key=idempotency_key
        )
        return result
