"""The registry over HTTP in the embedded mode: families, cases, scope, break-the-glass, audit,
statistics exports, idempotent writes and problem answers."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from conftest import System, family_payload
from sqlalchemy import func, select

from services.registry.models import ASSESSMENT_DOMAINS, Family, Measure

pytestmark = pytest.mark.embedded

TODAY = dt.datetime.now(dt.UTC).date()


def client(system: System, role: str, agency: str | None = None, subject: str | None = None) -> Any:
    c = system.app("registry").test_client()
    token = system.token(role, agency=agency, subject=subject)
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return c


def register(
    system: System, surname: str = "Иванова", role: str = "lead_specialist", **extra: Any
) -> dict[str, Any]:
    response = client(system, role).post("/families", json=family_payload(surname, **extra))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def case_of(system: System, family_id: str) -> dict[str, Any]:
    response = client(system, "lead_specialist").get(f"/families/{family_id}/cases")
    assert response.status_code == 200
    return response.get_json()[0]


def add_measure(
    system: System, case_id: str, agency: str | None = None, key: str | None = None
) -> Any:
    body: dict[str, Any] = {
        "title": "Проверка посещаемости",
        "kind": "school_check",
        "deadline": (TODAY + dt.timedelta(days=20)).isoformat(),
    }
    if agency:
        body["agency_id"] = agency
    headers = {"Idempotency-Key": key} if key else {}
    return client(system, "lead_specialist").post(
        f"/cases/{case_id}/measures", json=body, headers=headers
    )


def know_agency(system: System, agency_id: str, kind: str) -> None:
    """What the registry learns from the directory's agency events: the agency's kind."""
    from services.registry import directory

    with system.session("registry") as session, session.begin():
        directory.remember_agency(
            session, {"agency_id": agency_id, "kind": kind, "agency_version": 1}
        )


def agree(system: System, case_id: str, kinds: list[str]) -> dict[str, Any]:
    response = client(system, "lead_specialist").post(
        f"/cases/{case_id}/agreements",
        json={
            "signed_on": TODAY.isoformat(),
            "valid_until": (TODAY + dt.timedelta(days=365)).isoformat(),
            "consent_data_processing": True,
            "share_with": kinds,
        },
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_registration_validation_is_field_level_and_stores_nothing(embedded_system: System) -> None:
    bad = family_payload()
    bad["contacts"] = [{"kind": "phone", "value": "call me", "consent": True}]
    bad["members"][1]["birth_date"] = "03.02.2015"
    response = client(embedded_system, "coordinator").post("/families", json=bad)
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    errors = response.get_json()["errors"]
    assert "contacts.0.value" in errors and "members.1.birth_date" in errors
    assert "call me" not in response.get_data(as_text=True)
    with embedded_system.session("registry") as session:
        assert session.scalar(select(func.count()).select_from(Family)) == 0


def test_second_report_in_latin_shows_candidates_and_the_coordinator_links_it(
    embedded_system: System,
) -> None:
    first = register(embedded_system, "Иванова")
    assert first["duplicate_candidates"] == [] and first["stage"] == "preparatory"
    latin = family_payload("Ivanova")
    latin["members"][0]["full_name"] = "Ivanova Mariya Petrovna"
    latin["members"][1]["full_name"] = "Ivanova Anna Ivanovna"
    check = client(embedded_system, "lead_specialist").post(
        "/families/duplicates", json={"address": latin["address"], "members": latin["members"]}
    )
    [candidate] = check.get_json()["candidates"]
    assert candidate["family_id"] == first["id"] and candidate["score"] >= 0.75
    assert "children.birth_date" in candidate["matched_fields"]

    refused = client(embedded_system, "lead_specialist").post(
        "/families", json={**latin, "link_to": first["id"]}
    )
    assert refused.status_code == 403
    linked = client(embedded_system, "coordinator").post(
        "/families", json={**latin, "link_to": first["id"]}
    )
    assert linked.status_code == 200 and linked.get_json()["id"] == first["id"]
    links = client(embedded_system, "coordinator").get(f"/families/{first['id']}/links")
    assert len(links.get_json()) == 1
    with embedded_system.session("registry") as session:
        assert session.scalar(select(func.count()).select_from(Family)) == 1

    twice = register(embedded_system, "Ivanova", role="coordinator")
    assert twice["duplicate_candidates"][0]["family_id"] == first["id"]
    on_demand = client(embedded_system, "coordinator").get(f"/families/{twice['id']}/duplicates")
    assert on_demand.get_json()["candidates"][0]["family_id"] == first["id"]
    merged = client(embedded_system, "coordinator").post(
        f"/families/{first['id']}/links", json={"duplicate_id": twice["id"]}
    )
    assert merged.status_code == 201, merged.get_json()
    assert client(embedded_system, "coordinator").get(f"/families/{twice['id']}").status_code == 404


def test_search_filters_sort_and_paginate(embedded_system: System) -> None:
    for surname in ("Иванова", "Петрова", "Сидорова"):
        register(embedded_system, surname)
    register(embedded_system, "Орлова", district="Вожегодский район")
    c = client(embedded_system, "coordinator")
    page = c.get("/families?surname=петр").get_json()
    assert [f["display_name"] for f in page["items"]] == ["Петрова"]
    page = c.get("/families?district=Тарногский район&sort=display_name&page_size=2").get_json()
    assert page["total"] == 3 and page["pages"] == 2
    assert [f["display_name"] for f in page["items"]] == ["Иванова", "Петрова"]
    assert c.get("/families?stage=preparatory&in_bank=true").get_json()["total"] == 4
    bad = c.get("/families?sort=password")
    assert bad.status_code == 422 and "sort" in bad.get_json()["errors"]


def test_case_through_support_over_http(embedded_system: System) -> None:
    family = register(embedded_system)
    case = case_of(embedded_system, family["id"])
    lead = client(embedded_system, "lead_specialist")
    assert case["next_stage"] == {
        "stage": "support",
        "missing": ["agreement", "plan_measure", "plan_approved"],
    }
    refused = lead.post(f"/cases/{case['id']}/stage", json={"stage": "support"})
    assert refused.status_code == 422
    assert len(refused.get_json()["errors"]["stage"]) == 3
    agreement = {
        "signed_on": TODAY.isoformat(),
        "valid_until": (TODAY + dt.timedelta(days=365)).isoformat(),
        "consent_data_processing": True,
        "share_with": ["school", "health"],
    }
    assert lead.post(f"/cases/{case['id']}/agreements", json=agreement).status_code == 201
    assert add_measure(embedded_system, case["id"], agency="school-1").status_code == 201
    approval = lead.post(f"/cases/{case['id']}/approvals", json={"kind": "plan"}).get_json()
    assert (
        lead.post(f"/approvals/{approval['id']}/decision", json={"decision": "approve"}).status_code
        == 403
    )
    decided = client(embedded_system, "coordinator").post(
        f"/approvals/{approval['id']}/decision", json={"decision": "approve"}
    )
    assert decided.status_code == 200 and decided.get_json()["state"] == "approved"
    ready = lead.get(f"/cases/{case['id']}").get_json()
    assert ready["next_stage"] == {"stage": "support", "missing": []}
    moved = lead.post(f"/cases/{case['id']}/stage", json={"stage": "support"})
    assert moved.status_code == 200 and moved.get_json()["stage"] == "support"
    assert moved.get_json()["next_stage"] == {"stage": "final", "missing": ["measures_finished"]}
    log = lead.post(
        f"/cases/{case['id']}/contacts",
        json={"occurred_on": TODAY.isoformat(), "kind": "counselling_family", "note": "беседа"},
    )
    assert log.status_code == 201 and log.get_json()["staff"] == ["test-lead_specialist"]
    assessment = {
        "assessed_on": TODAY.isoformat(),
        "scores": dict.fromkeys(
            ASSESSMENT_DOMAINS,
            3,
        ),
    }
    assert lead.post(f"/cases/{case['id']}/assessments", json=assessment).status_code == 201
    assessment["scores"]["housing"] = 6
    bad = lead.post(f"/cases/{case['id']}/assessments", json=assessment)
    assert bad.status_code == 422 and "scores.housing.value" in bad.get_json()["errors"]
    dynamics = lead.get(f"/cases/{case['id']}/assessments").get_json()["dynamics"]
    assert dynamics["count"] == 1 and dynamics["domains"]["housing"]["change"] == 0
    problem = lead.post(
        f"/cases/{case['id']}/problems",
        json={"code": "truancy", "identified_on": TODAY.isoformat()},
    )
    assert problem.status_code == 201
    assert lead.get(f"/cases/{case['id']}/problems").get_json()[0]["code"] == "truancy"
    assert lead.get(f"/cases/{case['id']}/strengths").get_json() == []
    whole = lead.get(f"/cases/{case['id']}/workspace?contacts=10").get_json()
    for part in ("problems", "strengths", "agreements", "measures", "approvals", "assessments"):
        assert whole[part] == lead.get(f"/cases/{case['id']}/{part}").get_json(), part
    assert whole["contacts"] == lead.get(f"/cases/{case['id']}/contacts?page_size=10").get_json()
    assert whole["case"] == lead.get(f"/cases/{case['id']}").get_json()
    assert whole["number"] == family["number"]
    assert whole["measures"][0]["agency_access"] is not None  # as the plan says it
    assert lead.get(f"/cases/{case['id']}/workspace?contacts=0").status_code == 422
    school = client(embedded_system, "agency_staff", agency="school-1")
    assert school.get(f"/cases/{case['id']}/workspace").status_code == 403


def test_contacts_problems_and_strengths_answer_with_the_id_and_time_stored(
    embedded_system: System,
) -> None:
    family = register(embedded_system)
    case = case_of(embedded_system, family["id"])
    lead = client(embedded_system, "lead_specialist")
    writes = {
        "contacts": {"occurred_on": TODAY.isoformat(), "kind": "counselling_family"},
        "problems": {"code": "truancy", "identified_on": TODAY.isoformat()},
        "strengths": {"code": "supportive_relatives", "identified_on": TODAY.isoformat()},
    }
    for what, body in writes.items():
        path = f"/cases/{case['id']}/{what}"
        first = lead.post(path, json=body, headers={"Idempotency-Key": f"k-{what}"})
        assert first.status_code == 201, first.get_json()
        answer = first.get_json()
        assert answer["id"] and answer["recorded_at"], answer
        listed = lead.get(path).get_json()
        items = listed["items"] if isinstance(listed, dict) else listed
        assert [item["id"] for item in items] == [answer["id"]]
        assert items[0]["recorded_at"] == answer["recorded_at"]
        again = lead.post(path, json=body, headers={"Idempotency-Key": f"k-{what}"})
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.get_json() == answer


def test_idempotent_measure_is_added_once(embedded_system: System) -> None:
    family = register(embedded_system)
    case = case_of(embedded_system, family["id"])
    first = add_measure(embedded_system, case["id"], key="m-1")
    again = add_measure(embedded_system, case["id"], key="m-1")
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    with embedded_system.session("registry") as session:
        assert session.scalar(select(func.count()).select_from(Measure)) == 1


def test_overdue_measures_as_of_a_later_date_list_what_falls_due_by_then(
    embedded_system: System,
) -> None:
    """The console's home counts "due this week" as overdue as of next Monday."""
    family = register(embedded_system)
    add_measure(embedded_system, case_of(embedded_system, family["id"])["id"])
    coordinator = client(embedded_system, "coordinator")
    assert coordinator.get("/measures/overdue").get_json()["total"] == 0
    later = (TODAY + dt.timedelta(days=21)).isoformat()
    listed = coordinator.get(f"/measures/overdue?as_of={later}").get_json()
    assert listed["total"] == 1 and listed["items"][0]["kind"] == "school_check"
    refused = coordinator.get("/measures/overdue?as_of=someday")
    assert refused.status_code == 422 and "as_of" in json.dumps(refused.get_json()["errors"])


def test_agency_staff_see_only_referred_families_and_only_their_fields(
    embedded_system: System,
) -> None:
    referred = register(embedded_system, "Иванова")
    other = register(embedded_system, "Петрова")
    know_agency(embedded_system, "school-1", "school")
    case = case_of(embedded_system, referred["id"])
    add_measure(embedded_system, case["id"], agency="school-1")
    school = client(embedded_system, "agency_staff", agency="school-1", subject="teacher-1")
    assert school.get(f"/families/{referred['id']}").status_code == 403  # a measure, no consent
    assert school.get("/families").get_json()["items"] == []
    agree(embedded_system, case["id"], ["school"])
    listing = school.get("/families").get_json()
    assert [f["id"] for f in listing["items"]] == [referred["id"]]
    card = school.get(f"/families/{referred['id']}")
    assert card.status_code == 200
    body = card.get_json()
    assert body["access"] == "agency" and body["measures"][0]["kind"] == "school_check"
    assert "contacts" not in body and "notes" not in body and "social_environment" not in body
    assert school.get(f"/families/{other['id']}").status_code == 403
    trail = client(embedded_system, "admin").get(f"/audit?family_id={other['id']}&action=denied")
    assert trail.get_json()["items"][0]["actor"] == "teacher-1"
    assert school.get(f"/families/{referred['id']}/cases").status_code == 403
    police = client(embedded_system, "agency_staff", agency="pdn-1")
    assert police.get("/families").get_json()["total"] == 0


def test_the_coordinators_approvals_inbox(embedded_system: System) -> None:
    """Pending requests across cases with the family's number, oldest first; a coordinator's own
    request is left out of what they may decide; decided ones leave the inbox."""
    first, second = register(embedded_system), register(embedded_system, "Петрова")
    cases = [case_of(embedded_system, f["id"])["id"] for f in (first, second)]
    for case_id in cases:
        assert add_measure(embedded_system, case_id).status_code == 201
    lead = client(embedded_system, "lead_specialist")
    mine = client(embedded_system, "coordinator", subject="coord-1")
    asked = lead.post(f"/cases/{cases[0]}/approvals", json={"kind": "plan"}).get_json()
    own = mine.post(f"/cases/{cases[1]}/approvals", json={"kind": "plan"}).get_json()

    inbox = mine.get("/approvals").get_json()
    assert [(a["id"], a["number"], a["kind"]) for a in inbox["items"]] == [
        (asked["id"], first["number"], "plan"),
        (own["id"], second["number"], "plan"),
    ]
    assert inbox["items"][0]["district"] == first["address"]["district"]
    to_decide = mine.get("/approvals?mine_to_decide=true").get_json()
    assert [a["id"] for a in to_decide["items"]] == [asked["id"]]
    assert mine.get("/approvals?kind=closing").get_json()["total"] == 0
    assert mine.get("/approvals?district=Нигде").get_json()["total"] == 0
    decided = mine.post(f"/approvals/{asked['id']}/decision", json={"decision": "approve"})
    assert decided.status_code == 200
    assert [a["id"] for a in mine.get("/approvals").get_json()["items"]] == [own["id"]]
    assert [a["id"] for a in mine.get("/approvals?state=approved").get_json()["items"]] == [
        asked["id"]
    ]
    assert lead.get("/approvals").status_code == 403
    bad = mine.get("/approvals?state=maybe")
    assert bad.status_code == 422 and "state" in bad.get_json()["errors"]


def test_break_the_glass_needs_a_reason_expires_and_tells_the_coordinator(
    embedded_system: System,
) -> None:
    family = register(embedded_system)
    pdn = client(embedded_system, "agency_staff", agency="pdn-1", subject="inspector-1")
    assert pdn.get(f"/families/{family['id']}").status_code == 403
    short = pdn.post(f"/families/{family['id']}/break-glass", json={"reason": "надо"})
    assert short.status_code == 422 and "reason" in short.get_json()["errors"]
    granted = pdn.post(
        f"/families/{family['id']}/break-glass",
        json={"reason": "вызов 112: ребёнок один дома, нужен телефон матери"},
    )
    assert granted.status_code == 201
    expires = dt.datetime.fromisoformat(granted.get_json()["expires_at"])
    assert dt.timedelta(minutes=25) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=30)
    card = pdn.get(f"/families/{family['id']}").get_json()
    assert card["access"] == "emergency" and card["contacts"] == []
    [mine] = pdn.get("/break-glass?active=true").get_json()["items"]
    assert mine["id"] == granted.get_json()["id"] and mine["active"] is True
    colleague = client(embedded_system, "agency_staff", agency="pdn-1", subject="inspector-2")
    assert colleague.get("/break-glass").get_json()["total"] == 0
    coordinator_view = client(embedded_system, "coordinator").get("/break-glass?active=true")
    assert [g["subject"] for g in coordinator_view.get_json()["items"]] == ["inspector-1"]
    assert client(embedded_system, "lead_specialist").get("/break-glass").status_code == 403
    assert pdn.get("/break-glass/limits").get_json() == {"default_minutes": 30, "max_minutes": 120}
    lead = client(embedded_system, "lead_specialist")
    assert (
        lead.post(f"/families/{family['id']}/break-glass", json={"reason": "x" * 20}).status_code
        == 403
    )
    with embedded_system.session("registry") as session:
        table = embedded_system.worker("registry").tables
        events = [json.loads(b) for b in session.scalars(select(table.outbox.c.body))]
        audits = (
            session.execute(
                select(table.audit_log).where(table.audit_log.c.action == "break_glass")
            )
            .mappings()
            .all()
        )
    [grant] = [e for e in events if e["type"] == "registry.access.emergency_granted"]
    assert grant["data"]["subject"] == "inspector-1" and "reason" not in grant["data"]
    assert audits[0]["reason"].startswith("вызов 112") and audits[0]["actor"] == "inspector-1"


def test_auditor_sees_statistics_only_in_every_format(embedded_system: System) -> None:
    register(embedded_system)
    auditor = client(embedded_system, "auditor")
    assert auditor.get("/families").status_code == 403
    family_id = client(embedded_system, "coordinator").get("/families").get_json()["items"][0]["id"]
    assert auditor.get(f"/families/{family_id}").status_code == 403
    stats = auditor.get(f"/statistics?year_from={TODAY.year}&year_to={TODAY.year}")
    assert stats.status_code == 200
    [row] = stats.get_json()["rows"]
    assert row["entered"] == 1 and row["in_bank_at_year_end"]["risk_group"] == 1
    csv = auditor.get("/statistics?format=csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert "Поставлено на учёт" in csv.get_data().decode("utf-8-sig")
    xlsx = auditor.get("/statistics?format=xlsx")
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"
    png = auditor.get("/statistics?format=png&region=Вологодская область")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert auditor.get("/statistics?year_from=2020&year_to=2019").status_code == 422


def test_every_read_and_write_is_audited_and_only_admins_read_the_trail(
    embedded_system: System,
) -> None:
    family = register(embedded_system)
    lead = client(embedded_system, "lead_specialist", subject="spec-9")
    lead.get(f"/families/{family['id']}")
    lead.patch(f"/families/{family['id']}", json={"notes": "семья переехала к бабушке"})
    admin = client(embedded_system, "admin")
    trail = admin.get(f"/audit?family_id={family['id']}&actor=spec-9").get_json()
    assert [(e["action"], e["entity"]) for e in trail["items"]] == [
        ("update", "family"),
        ("read", "family"),
    ]
    assert trail["items"][0]["fields"] == ["notes"]
    assert "бабушке" not in json.dumps(trail)
    assert admin.get("/audit?action=create&page_size=1").get_json()["total"] == 1
    assert lead.get("/audit").status_code == 403
    assert admin.delete("/audit").status_code == 405
    assert admin.get(f"/families/{family['id']}").status_code == 403


def test_admins_extend_the_problem_catalogue(embedded_system: System) -> None:
    admin = client(embedded_system, "admin")
    added = admin.post(
        "/catalogues/problem",
        json={"code": "gambling", "title_ru": "Лудомания", "title_en": "Gambling"},
    )
    assert added.status_code == 201
    assert (
        client(embedded_system, "lead_specialist")
        .post("/catalogues/problem", json={"code": "x_y", "title_ru": "x", "title_en": "x"})
        .status_code
        == 403
    )
    codes = {i["code"] for i in admin.get("/catalogues/problem").get_json()["items"]}
    assert {"gambling", "alcohol_abuse", "truancy"} <= codes
    assert admin.delete("/catalogues/problem/gambling").status_code == 204
    assert admin.delete("/catalogues/problem/debts").status_code == 404


def test_an_agreement_is_withdrawn_once_with_a_reason_and_referrals_is_told(
    embedded_system: System,
) -> None:
    from services.registry.models import tables as table

    family = register(embedded_system)
    case = case_of(embedded_system, family["id"])
    lead = client(embedded_system, "lead_specialist")
    agreement = lead.post(
        f"/cases/{case['id']}/agreements",
        json={
            "signed_on": TODAY.isoformat(),
            "valid_until": (TODAY + dt.timedelta(days=365)).isoformat(),
            "consent_data_processing": True,
            "share_with": ["school"],
        },
    ).get_json()
    url = f"/agreements/{agreement['id']}/withdrawal"
    school = client(embedded_system, "agency_staff", agency="school-1")
    assert school.post(url, json={"reason": "Семья отозвала согласие"}).status_code == 403
    blank = lead.post(url, json={"reason": "   "})
    assert blank.status_code == 422 and "reason" in blank.get_json()["errors"]
    done = lead.post(url, json={"reason": "Семья отозвала согласие"})
    assert done.status_code == 200, done.get_json()
    assert (
        done.get_json()["withdrawn_at"]
        and done.get_json()["withdrawn_by"] == "test-lead_specialist"
    )
    assert lead.post(url, json={"reason": "ещё раз"}).status_code == 409
    assert lead.post("/agreements/nope/withdrawal", json={"reason": "x"}).status_code == 404
    listed = lead.get(f"/cases/{case['id']}/agreements").get_json()
    assert listed[0]["withdrawal_reason"] == "Семья отозвала согласие"
    with embedded_system.session("registry") as session:
        bodies = [json.loads(b) for b in session.scalars(select(table.outbox.c.body))]
    withdrawn = [e["data"] for e in bodies if e["type"] == "registry.agreement.withdrawn"]
    assert len(withdrawn) == 1
    assert withdrawn[0]["agreement_id"] == agreement["id"]
    assert withdrawn[0]["share_with"] == ["school"]
    assert withdrawn[0]["reason"] == "Семья отозвала согласие"
