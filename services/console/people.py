"""Who is signed in, as the agency directory knows them: name, agency and role.

The session keeps the person and their bearer token; views read the person from
:func:`current_person` and call the services through ``console_clients()`` with that token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from shared.auth.roles import ADMIN, AGENCY_STAFF, AUDITOR, COORDINATOR, LEAD_SPECIALIST

DIRECTORY_ROLES = {COORDINATOR: COORDINATOR, LEAD_SPECIALIST: LEAD_SPECIALIST}
"""A directory contact's role that is also a token role; every other contact role (a school's
social pedagogue, a police inspector...) works as ``agency_staff`` of their agency."""

EXTRA_DEMO_PEOPLE: tuple[dict[str, Any], ...] = (
    {
        "person_id": "demo-admin",
        "name": "Администратор (демо)",
        "role": ADMIN,
        "roles": [ADMIN],
        "agency_id": None,
        "agency_name": None,
    },
    {
        "person_id": "demo-region",
        "name": "Региональный офис (демо)",
        "role": AUDITOR,
        "roles": [AUDITOR],
        "agency_id": None,
        "agency_name": None,
    },
)
"""People of the README's story who are not agency staff in the directory."""


@dataclass(frozen=True)
class Person:
    subject: str
    name: str
    roles: tuple[str, ...]
    role: str
    """The directory's word for their job (``inspector``), or their token role."""
    agency_id: str | None = None
    agency_name: str | None = None
    districts: tuple[str, ...] = ()
    """The districts of their agency: a coordinator's home page counts these."""

    def has_role(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["roles"] = list(self.roles)
        data["districts"] = list(self.districts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Person:
        return cls(
            **{
                **data,
                "roles": tuple(data.get("roles") or ()),
                "districts": tuple(data.get("districts") or ()),
            }
        )


def token_roles(contact_role: str) -> list[str]:
    return [DIRECTORY_ROLES.get(contact_role, AGENCY_STAFF)]


def staff(agencies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every contact of every agency, with the token roles they sign in with."""
    people = []
    for agency in agencies:
        for contact in agency.get("contacts") or []:
            people.append(
                {
                    "person_id": contact["person_id"],
                    "name": contact.get("name") or contact["person_id"],
                    "role": contact.get("role") or "",
                    "roles": token_roles(contact.get("role") or ""),
                    "agency_id": agency["id"],
                    "agency_name": agency.get("name") or agency["id"],
                    "districts": list(agency.get("districts") or []),
                }
            )
    return people


def find_in_directory(
    agencies: list[dict[str, Any]], subject: str, agency_id: str | None
) -> dict[str, Any] | None:
    for person in staff(agencies):
        if person["person_id"] == subject and (
            agency_id is None or person["agency_id"] == agency_id
        ):
            return person
    return None
