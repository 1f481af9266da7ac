"""Who acts in the fault suite, with which credentials, and the agency directory they need:
the family centre's coordinator, the clinic (referrals by webhook, an intake contact reached by
email and SMS) and the school (signals with its API key)."""

from __future__ import annotations

from dataclasses import dataclass, field

from chaos.client import Http, Tokens

DISTRICT = "Тарногский район"
SERVICE_CODE = "medical_examination"
COORDINATOR = "chaos-coordinator"
CLINIC_INTAKE = "chaos-clinic-intake"
CENTRE, CLINIC, SCHOOL = "chaos-centre", "chaos-clinic", "chaos-school"


@dataclass
class Parties:
    http: Http
    tokens: Tokens
    school_key: str = ""
    coordinator: dict[str, str] = field(default_factory=dict)
    admin: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.coordinator = self.tokens.bearer(COORDINATOR, "coordinator")
        self.admin = self.tokens.bearer("chaos-admin", "admin")

    @property
    def school(self) -> dict[str, str]:
        return {"X-Api-Key": self.school_key}

    def set_up_directory(self, webhook_url: str) -> None:
        """The family centre's coordinator, the clinic with its intake contact and its webhook,
        the school with an API key; before any fault."""
        agencies = [
            {
                "id": CENTRE,
                "name": "Центр помощи семье",
                "kind": "family_centre",
                "districts": [DISTRICT],
                "contacts": [
                    {
                        "person_id": COORDINATOR,
                        "name": "Координатор",
                        "role": "coordinator",
                        "email": "coordinator@centre.test",
                        "phone": "+79001000001",
                    }
                ],
            },
            {
                "id": CLINIC,
                "name": "Районная поликлиника",
                "kind": "health",
                "districts": [DISTRICT],
                "services": [SERVICE_CODE],
                "delivery": "webhook",
                "contacts": [
                    {
                        "person_id": CLINIC_INTAKE,
                        "name": "Регистратура",
                        "role": "referrals",
                        "email": "intake@clinic.test",
                        "phone": "+79001000002",
                    }
                ],
            },
            {"id": SCHOOL, "name": "Школа № 1", "kind": "school", "districts": [DISTRICT]},
        ]
        for agency in agencies:
            answer = self.http.call(
                "referrals",
                "POST",
                "/agencies",
                auth=self.admin,
                body=agency,
                key=f"setup-{agency['id']}",
            )
            self.http.expect(201, answer, f"agency {agency['id']}")
        hook = self.http.call(
            "referrals",
            "POST",
            f"/agencies/{CLINIC}/webhooks",
            auth=self.admin,
            body={"url": webhook_url, "events": ["referrals.referral.status_changed"]},
        )
        self.http.expect(201, hook, "clinic webhook")
        key = self.http.call(
            "referrals",
            "POST",
            f"/agencies/{SCHOOL}/api-keys",
            auth=self.admin,
            body={"name": "school information system"},
        )
        self.school_key = self.http.expect(201, key, "school API key")["key"]
