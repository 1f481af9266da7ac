"""Every cell of who reads what of a family: agency kind x consent state x read x caller, asserted
exactly, on SQLite with the embedded broker and on PostgreSQL with RabbitMQ (the list's SQL is
what production runs). Events travel between the services as in production: the directory's
agencies reach the registry, agreements and measures reach referrals, families reach raids.

The rule (services/registry/access.py): an agency reads a family while the open case has a
measure for it and the newest agreement in force shares with its kind, or its staff member broke
the glass. Casework reads stay with casework roles. Referrals shows an agency only referrals that
left draft, which needs the same consent when they are sent. Raids shows a raid's families to
the people on the raid (docs/architecture.md says why).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import System, family_payload
from sqlalchemy import select

from services.referrals import directory
from services.referrals.models import Referral
from services.referrals.models import tables as referral_tables
from services.registry.models import tables as registry_tables
from shared.agencies import AGENCY_KINDS
from shared.auth.apikeys import create_api_key

pytestmark = pytest.mark.embedded

TODAY = dt.datetime.now(dt.UTC).date()
KINDS = ("police_pdn", "school", "health", "charity")
STATES = (
    "no_agreement",
    "shared",
    "not_shared",
    "expired",
    "replaced",
    "withdrawn",
    "break_glass",
    "case_closed",
)
# What each read answers to the agency whose measure it is, per consent state.
FAMILY_READS = ("family_file", "family_list", "family_search", "family_name_search")
CASEWORK_READS = ("case", "plan", "contacts", "assessments", "agreements", "problems")
READABLE = {"shared", "break_glass"}
# Referrals: a referral leaves draft only under consent when it is sent; the one sent before the
# case closed stays the agency's (it carries the family's id and number, never the file).
REFERRAL_VISIBLE = {"shared", "case_closed"}
CALLERS = ("staff", "system")
SURNAMES = {kind: f"Матрица{chr(0x410 + i)}" for i, kind in enumerate(KINDS)}


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest) -> Iterator[System]:
    if request.param == "sqlite":
        yield request.getfixturevalue("embedded_system")
    else:
        yield request.getfixturevalue("system")


def agency_id(kind: str) -> str:
    return f"{kind}-matrix"


def round_trip(system: System, producer: str, *consumers: str) -> None:
    system.relay(producer)
    for consumer in consumers:
        system.consume(consumer)


class Callers:
    """Test clients of each service for each caller."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.keys: dict[str, str] = {}

    def person(self, service: str, role: str, agency: str | None = None, subject: str = "") -> Any:
        client = self.system.app(service).test_client()
        token = self.system.token(role, agency=agency, subject=subject or f"m-{role}")
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return client

    def staff(self, service: str, kind: str) -> Any:
        return self.person(service, "agency_staff", agency_id(kind), f"staff-{kind}")

    def agency_system(self, kind: str) -> Any:
        if kind not in self.keys:
            with self.system.session("registry") as session, session.begin():
                self.keys[kind] = create_api_key(
                    session, registry_tables, agency_id=agency_id(kind), name="matrix"
                )
        client = self.system.app("registry").test_client()
        client.environ_base["HTTP_X_API_KEY"] = self.keys[kind]
        return client

    def referrals_system(self, kind: str) -> Any:
        """The agency's own system on referrals, with an API key of that service."""
        with self.system.session("referrals") as session, session.begin():
            key = create_api_key(session, referral_tables, agency_id=agency_id(kind), name="matrix")
        client = self.system.app("referrals").test_client()
        client.environ_base["HTTP_X_API_KEY"] = key
        return client

    def referral_of(self, measure_id: str) -> str:
        """The referral the measure became (sent or draft), from referrals' own table."""
        with self.system.session("referrals") as session:
            found = session.scalar(select(Referral.id).where(Referral.measure_id == measure_id))
        assert found is not None
        return str(found)

    def registry_caller(self, caller: str, kind: str) -> Any:
        return self.staff("registry", kind) if caller == "staff" else self.agency_system(kind)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def agreement(lead: Any, case_id: str, kinds: list[str], **dates: dt.date) -> dict[str, Any]:
    signed = dates.get("signed_on", TODAY)
    until = dates.get("valid_until", TODAY + dt.timedelta(days=365))
    return ok(
        lead.post(
            f"/cases/{case_id}/agreements",
            json={
                "signed_on": signed.isoformat(),
                "valid_until": until.isoformat(),
                "consent_data_processing": True,
                "share_with": kinds,
            },
        ),
        201,
    )


def others(kind: str) -> list[str]:
    return [k for k in AGENCY_KINDS if k != kind]


def set_consent(lead: Any, case_id: str, kind: str, state: str) -> None:
    """The family's agreements as the state says (break-the-glass and no_agreement: none)."""
    if state in ("shared", "case_closed"):
        agreement(lead, case_id, [kind])
    elif state == "not_shared":
        agreement(lead, case_id, others(kind))
    elif state == "expired":
        agreement(
            lead,
            case_id,
            [kind],
            signed_on=TODAY - dt.timedelta(days=400),
            valid_until=TODAY - dt.timedelta(days=1),
        )
    elif state == "replaced":
        agreement(lead, case_id, [kind], signed_on=TODAY - dt.timedelta(days=10))
        agreement(lead, case_id, others(kind))
    elif state == "withdrawn":
        withdrawn = agreement(lead, case_id, [kind])
        ok(
            lead.post(
                f"/agreements/{withdrawn['id']}/withdrawal",
                json={"reason": "Семья отозвала согласие"},
            )
        )


def close_case(callers: Callers, case_id: str) -> None:
    """Support, final and closed through the API, as the lead specialist and the coordinator."""
    lead = callers.person("registry", "lead_specialist")
    coordinator = callers.person("registry", "coordinator")
    plan = ok(lead.post(f"/cases/{case_id}/approvals", json={"kind": "plan"}), 201)
    ok(coordinator.post(f"/approvals/{plan['id']}/decision", json={"decision": "approve"}))
    ok(lead.post(f"/cases/{case_id}/stage", json={"stage": "support"}))
    for measure in ok(lead.get(f"/cases/{case_id}/measures")):
        ok(lead.patch(f"/measures/{measure['id']}", json={"status": "done"}))
    ok(lead.post(f"/cases/{case_id}/stage", json={"stage": "final"}))
    ok(
        lead.put(
            f"/cases/{case_id}/closing",
            json={"analysis": "Работа проведена", "outcome": "improvement"},
        )
    )
    closing = ok(lead.post(f"/cases/{case_id}/approvals", json={"kind": "closing"}), 201)
    ok(
        coordinator.post(
            f"/approvals/{closing['id']}/decision",
            json={"decision": "approve", "decision_ref": "КДН № 1/1"},
        )
    )
    assert ok(lead.get(f"/cases/{case_id}"))["stage"] == "closed"


def schedule_raids(callers: Callers, families: dict[tuple[str, str], dict[str, str]]) -> dict:
    """One raid per agency kind over that kind's families, with its staff member on it."""
    coordinator = callers.person("raids", "coordinator")
    raids = {}
    for n, kind in enumerate(KINDS):
        people = [
            {
                "person_id": f"specialist-{kind}",
                "agency_id": "centre",
                "agency_kind": "family_centre",
                "display_name": "Специалист",
            },
            {
                "person_id": f"staff-{kind}",
                "agency_id": agency_id(kind),
                "agency_kind": kind,
                "display_name": "Сотрудник",
            },
        ]
        raid = coordinator.post(
            "/raids",
            json={
                "title": "Рейд",
                "purpose": "planned_check",
                "district": "Тарногский район",
                "date": (TODAY + dt.timedelta(days=3 + n)).isoformat(),
                "start_time": "09:00",
                "end_time": "17:00",
                "family_ids": [families[(kind, s)]["family_id"] for s in STATES],
                "centre": {"name": "КЦСОН", "latitude": 60.4985, "longitude": 43.589},
                "participants": people,
            },
        )
        raids[kind] = ok(raid, 201)["id"]
    return raids


def prepare(system: System) -> tuple[Callers, dict[tuple[str, str], dict[str, str]], dict]:
    callers = Callers(system)
    with system.session("referrals") as session, session.begin():
        for kind in KINDS:
            directory.create_agency(
                session,
                {
                    "id": agency_id(kind),
                    "name": f"Учреждение {kind}",
                    "kind": kind,
                    "districts": ["Тарногский район"],
                    "services": ["counselling"],
                },
                dt.datetime.now(dt.UTC),
            )
    round_trip(system, "referrals", "registry")  # the registry learns the agencies' kinds
    lead = callers.person("registry", "lead_specialist")
    families: dict[tuple[str, str], dict[str, str]] = {}
    for kind in KINDS:
        for state in STATES:
            family = ok(lead.post("/families", json=family_payload(SURNAMES[kind])), 201)
            case = ok(lead.get(f"/families/{family['id']}/cases"))[0]
            families[(kind, state)] = {"family_id": family["id"], "case_id": case["id"]}
            set_consent(lead, case["id"], kind, state)
    round_trip(system, "registry", "referrals", "raids")  # consents and families first
    raids = schedule_raids(callers, families)
    for (kind, state), ids in families.items():
        measure = ok(
            lead.post(
                f"/cases/{ids['case_id']}/measures",
                json={
                    "title": "Консультация",
                    "kind": "counselling",
                    "agency_id": agency_id(kind),
                    "deadline": (TODAY + dt.timedelta(days=30)).isoformat(),
                },
            ),
            201,
        )
        ids["measure_id"] = measure["id"]
        ids["plan_says"] = measure["agency_access"]
        if state == "break_glass":
            ok(
                callers.staff("registry", kind).post(
                    f"/families/{ids['family_id']}/break-glass",
                    json={"reason": "Угроза жизни ребёнка, нужен адрес"},
                ),
                201,
            )
    round_trip(system, "registry", "referrals")  # measures -> referrals (sent or draft)
    round_trip(system, "referrals", "registry")
    for (kind, state), ids in families.items():
        if state == "case_closed":
            family_file = callers.staff("registry", kind).get(f"/families/{ids['family_id']}")
            assert family_file.status_code == 200  # before the case closes, the agency reads
            close_case(callers, ids["case_id"])
    return callers, families, raids


def observe(
    callers: Callers, families: dict[tuple[str, str], dict[str, str]], raids: dict
) -> list[tuple[str, str, str, str, bool, bool]]:
    """(kind, state, caller, read, expected, seen) for every cell."""
    cells = []

    def cell(kind: str, state: str, caller: str, read: str, expected: bool, seen: bool) -> None:
        cells.append((kind, state, caller, read, expected, seen))

    for kind in KINDS:
        for caller in CALLERS:
            client = callers.registry_caller(caller, kind)
            listed = {f["id"] for f in ok(client.get("/families?page_size=100"))["items"]}
            found = {
                f["id"]
                for f in ok(client.get(f"/families?surname={SURNAMES[kind]}&page_size=100"))[
                    "items"
                ]
            }
            named = {
                f["id"]
                for f in ok(client.get(f"/families?q={SURNAMES[kind]}&page_size=100"))["items"]
            }
            for (owner, state), ids in families.items():
                # the agency's own families per consent state; another kind's never
                readable = owner == kind and (
                    state in READABLE and (caller == "staff" or state != "break_glass")
                )
                label = state if owner == kind else f"other:{owner}:{state}"
                family_file = client.get(f"/families/{ids['family_id']}")
                assert family_file.status_code in (200, 403)
                cell(kind, label, caller, "family_file", readable, family_file.status_code == 200)
                cell(kind, label, caller, "family_list", readable, ids["family_id"] in listed)
                cell(kind, label, caller, "family_search", readable, ids["family_id"] in found)
                cell(kind, label, caller, "family_name_search", readable, ids["family_id"] in named)
                if owner != kind:
                    continue
                for read, path in (
                    ("case", ""),
                    ("plan", "/measures"),
                    ("contacts", "/contacts"),
                    ("assessments", "/assessments"),
                    ("agreements", "/agreements"),
                    ("problems", "/problems"),
                ):
                    response = client.get(f"/cases/{ids['case_id']}{path}")
                    assert response.status_code in (200, 403)
                    cell(kind, state, caller, read, False, response.status_code == 200)
        # referrals (the agency's staff and its system, over the API and FHIR) and raids
        referrals = callers.staff("referrals", kind)
        theirs = {r["family_id"] for r in ok(referrals.get("/referrals?page_size=100"))["items"]}
        system_key = callers.referrals_system(kind)
        fed = {r["family_id"] for r in ok(system_key.get("/referrals/changes?limit=500"))["items"]}
        raid_client = callers.staff("raids", kind)
        assert raid_client.get("/families").status_code == 403  # the raid planner's list
        for other, raid_id in raids.items():
            response = raid_client.get(f"/raids/{raid_id}")
            assert response.status_code == (200 if other == kind else 403)
        raid = ok(raid_client.get(f"/raids/{raids[kind]}"))
        on_raid = {f["family_id"] for f in raid["families"] if f["display_name"]}
        for state in STATES:
            ids = families[(kind, state)]
            visible = state in REFERRAL_VISIBLE
            referral_id = callers.referral_of(ids["measure_id"])
            one = referrals.get(f"/referrals/{referral_id}")
            assert one.status_code in (200, 404)
            fhir = system_key.get(f"/fhir/ServiceRequest/{referral_id}")
            assert fhir.status_code in (200, 404)
            cell(kind, state, "staff", "referral_list", visible, ids["family_id"] in theirs)
            cell(kind, state, "staff", "referral", visible, one.status_code == 200)
            cell(kind, state, "system", "referral_feed", visible, ids["family_id"] in fed)
            cell(kind, state, "system", "fhir_service_request", visible, fhir.status_code == 200)
            cell(kind, state, "staff", "raid_families", True, ids["family_id"] in on_raid)
    return cells


def test_every_cell_of_the_consent_matrix(world: System, capsys: pytest.CaptureFixture) -> None:
    callers, families, raids = prepare(world)
    cells = observe(callers, families, raids)
    wrong = [c for c in cells if c[4] != c[5]]
    assert wrong == [], "\n".join(
        f"{kind} {state} {caller} {read}: expected {'allowed' if exp else 'denied'}, "
        f"got {'allowed' if seen else 'denied'}"
        for kind, state, caller, read, exp, seen in wrong
    )
    own = len(KINDS) * len(STATES)
    registry_cells = (
        len(KINDS) * len(CALLERS) * (own * len(FAMILY_READS) + len(STATES) * len(CASEWORK_READS))
    )
    # referral list, referral, the system's feed and FHIR ServiceRequest, raid families
    assert len(cells) == registry_cells + own * 5
    # the plan said at once why each agency could not act (the glass is a person's, not the plan's)
    for (kind, state), ids in families.items():
        granted = state in ("shared", "case_closed")
        assert ids["plan_says"]["granted"] is granted, (kind, state, ids["plan_says"])
        expected_reason = {
            "no_agreement": "no_agreement",
            "break_glass": "no_agreement",
            "not_shared": "not_shared",
            "replaced": "not_shared",
            "expired": "agreement_expired",
            "withdrawn": "agreement_withdrawn",
        }.get(state)
        assert ids["plan_says"]["reason"] == expected_reason, (kind, state)
    with capsys.disabled():
        print(f"\nconsent matrix: {len(cells)} cells, all as expected")
