"""The referrals API on SQLite and the file transport: directory, referrals with consent and
scope, the agency-system API with API keys, idempotent retries, problems for bad input, signals."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from conftest import System
from sqlalchemy import func, select

from services.referrals import directory
from services.referrals.models import KnownFamily, Referral

pytestmark = pytest.mark.embedded

SCHOOL = {
    "id": "school-1",
    "name": "Тарногская школа",
    "kind": "school",
    "districts": ["Тарнога"],
    "services": ["truancy_work"],
    "contacts": [
        {
            "person_id": "teacher-1",
            "name": "Педагог",
            "role": "social_pedagogue",
            "email": "t1@school.test",
            "preferences": {"email": True},
        }
    ],
}
REFERRAL = {
    "family_id": "fam-1",
    "family_number": "Т-001",
    "district": "Тарнога",
    "service_code": "truancy_work",
    "reason": "пропуски занятий",
    "urgency": "urgent",
    "deadline": "2030-01-31",
    "contact": {"person_id": "spec-1", "name": "Специалист", "phone": "+7 900 000-00-00"},
}


def client(system: System, role: str, agency: str | None = None, subject: str | None = None) -> Any:
    c = system.app("referrals").test_client()
    token = system.token(role, agency=agency, subject=subject or f"test-{role}")
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return c


def key_client(system: System, key: str) -> Any:
    c = system.app("referrals").test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"ApiKey {key}"
    return c


def consent(system: System, family_id: str = "fam-1", kinds: tuple[str, ...] = ("school",)) -> None:
    today = dt.date.today()
    with system.session("referrals") as session, session.begin():
        directory.remember_agreement(
            session,
            {
                "agreement_id": f"agr-{family_id}",
                "case_id": "c",
                "family_id": family_id,
                "signed_on": today - dt.timedelta(days=1),
                "valid_until": today + dt.timedelta(days=90),
                "consent_data_processing": True,
                "share_with": list(kinds),
            },
        )


def setup_agencies(system: System) -> Any:
    admin = client(system, "admin")
    assert admin.post("/agencies", json=SCHOOL).status_code == 201
    other = {**SCHOOL, "id": "school-2", "name": "Другая школа", "contacts": []}
    assert admin.post("/agencies", json=other).status_code == 201
    return admin


def count_referrals(system: System) -> int:
    with system.session("referrals") as session:
        return int(session.scalar(select(func.count()).select_from(Referral)) or 0)


def test_directory_crud_routing_and_problems(embedded_system: System) -> None:
    admin = setup_agencies(embedded_system)
    listed = admin.get("/agencies?district=Тарнога&service=truancy_work").get_json()
    assert listed["total"] == 2
    patched = admin.patch("/agencies/school-1", json={"working_hours": {"mon-fri": "08-16"}})
    assert patched.status_code == 200 and patched.get_json()["version"] == 2
    put = admin.put(
        "/agencies/school-1/contacts/teacher-2",
        json={"name": "Завуч", "role": "head", "phone": "+7 900 111-22-33"},
    )
    assert put.status_code == 200
    assert len(admin.get("/agencies/school-1").get_json()["contacts"]) == 2
    assert admin.delete("/agencies/school-1/contacts/teacher-2").status_code == 204

    bad = admin.post("/agencies", json={**SCHOOL, "id": "x", "kind": "spaceship"})
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"
    assert "kind" in bad.get_json()["errors"]
    staff = client(embedded_system, "agency_staff", agency="school-1")
    assert staff.post("/agencies", json={**SCHOOL, "id": "y"}).status_code == 403

    rule = admin.put(
        "/routing-rules",
        json={"service_code": "truancy_work", "district": "*", "agency_id": "school-1"},
    )
    assert rule.status_code == 200
    refused = admin.put(
        "/routing-rules", json={"service_code": "dance", "district": "*", "agency_id": "school-1"}
    )
    assert refused.status_code == 422 and "service_code" in refused.get_json()["errors"]


def test_referral_needs_consent_and_a_coordinator_override_is_audited(
    embedded_system: System,
) -> None:
    setup_agencies(embedded_system)
    specialist = client(embedded_system, "lead_specialist", subject="spec-1")
    body = {**REFERRAL, "agency_id": "school-1"}
    refused = specialist.post("/referrals", json=body)
    assert refused.status_code == 422
    assert refused.get_json()["type"].endswith("consent-missing")
    assert "fam-1" not in refused.get_data(as_text=True)
    assert count_referrals(embedded_system) == 0

    coordinator = client(embedded_system, "coordinator", subject="coord-1")
    overridden = coordinator.post(
        "/referrals", json={**body, "consent_override_reason": "угроза жизни"}
    )
    assert overridden.status_code == 201, overridden.get_json()
    assert overridden.get_json()["consent_override"] is True
    with embedded_system.session("referrals") as session:
        from services.referrals.models import tables

        log = (
            session.execute(
                select(tables.audit_log).where(tables.audit_log.c.action == "consent_override")
            )
            .mappings()
            .all()
        )
        assert len(log) == 1 and log[0]["reason"] == "угроза жизни" and log[0]["actor"] == "coord-1"


def test_lifecycle_over_http_with_scope_claim_comments_and_idempotency(
    embedded_system: System,
) -> None:
    setup_agencies(embedded_system)
    consent(embedded_system)
    specialist = client(embedded_system, "lead_specialist", subject="spec-1")
    headers = {"Idempotency-Key": "create-1"}
    created = specialist.post(
        "/referrals", json={**REFERRAL, "agency_id": "school-1"}, headers=headers
    )
    assert created.status_code == 201
    again = specialist.post(
        "/referrals", json={**REFERRAL, "agency_id": "school-1"}, headers=headers
    )
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert (
        again.get_json()["id"] == created.get_json()["id"] and count_referrals(embedded_system) == 1
    )
    referral_id = created.get_json()["id"]

    teacher = client(embedded_system, "agency_staff", agency="school-1", subject="teacher-1")
    stranger = client(embedded_system, "agency_staff", agency="school-2", subject="teacher-9")
    assert stranger.get(f"/referrals/{referral_id}").status_code == 404
    assert stranger.get("/referrals").get_json()["total"] == 0
    assert (
        stranger.post(
            f"/referrals/{referral_id}/transitions", json={"status": "received"}
        ).status_code
        == 404
    )

    assert teacher.post(f"/referrals/{referral_id}/claim").get_json()["owner_id"] == "teacher-1"
    illegal = teacher.post(
        f"/referrals/{referral_id}/transitions", json={"status": "completed", "outcome": "x"}
    )
    assert (
        illegal.status_code == 409 and "from requested to completed" in illegal.get_json()["detail"]
    )
    no_reason = teacher.post(f"/referrals/{referral_id}/transitions", json={"status": "received"})
    assert no_reason.status_code == 200
    reject = teacher.post(f"/referrals/{referral_id}/transitions", json={"status": "rejected"})
    assert reject.status_code == 422 and "reason" in reject.get_json()["errors"]
    cancel = teacher.post(
        f"/referrals/{referral_id}/transitions", json={"status": "cancelled", "reason": "x"}
    )
    assert cancel.status_code == 403
    stale = teacher.post(
        f"/referrals/{referral_id}/transitions", json={"status": "accepted", "version": 2}
    )
    assert stale.status_code == 409 and stale.get_json()["type"].endswith("stale-version")
    accepted = teacher.post(
        f"/referrals/{referral_id}/transitions", json={"status": "accepted", "version": 3}
    )
    assert accepted.status_code == 200, accepted.get_json()

    assert (
        teacher.post(
            f"/referrals/{referral_id}/comments", json={"body": "Связались с семьёй"}
        ).status_code
        == 201
    )
    assert (
        specialist.post(f"/referrals/{referral_id}/comments", json={"body": "Спасибо"}).status_code
        == 201
    )
    detail = specialist.get(f"/referrals/{referral_id}").get_json()
    assert [h["to_status"] for h in detail["history"]] == ["requested", "received", "accepted"]
    assert [c["author_id"] for c in detail["comments"]] == ["teacher-1", "spec-1"]
    assert (
        specialist.post("/referrals", json={**REFERRAL, "urgency": "whenever"}).status_code == 422
    )


def test_agency_systems_with_api_keys_see_only_their_agency(embedded_system: System) -> None:
    admin = setup_agencies(embedded_system)
    consent(embedded_system)
    coordinator = client(embedded_system, "coordinator")
    ids = {}
    for agency in ("school-1", "school-2"):
        response = coordinator.post("/referrals", json={**REFERRAL, "agency_id": agency})
        assert response.status_code == 201
        ids[agency] = response.get_json()["id"]
    key_a = admin.post("/agencies/school-1/api-keys", json={"name": "АИС школы"})
    key_b = admin.post("/agencies/school-2/api-keys", json={"name": "АИС другой школы"})
    assert key_a.status_code == 201 and key_a.get_json()["key"].startswith("opk_")
    system_a = key_client(embedded_system, key_a.get_json()["key"])
    system_b = key_client(embedded_system, key_b.get_json()["key"])

    feed = system_a.get("/referrals/changes").get_json()
    assert [r["id"] for r in feed["items"]] == [ids["school-1"]]
    assert system_a.get(f"/referrals/{ids['school-2']}").status_code == 404
    assert system_b.get(f"/referrals/{ids['school-1']}").status_code == 404
    assert (
        system_a.get("/referrals/changes", query_string={"since": feed["next_cursor"]}).get_json()[
            "items"
        ]
        == []
    )
    moved = system_a.post(
        f"/referrals/{ids['school-1']}/transitions",
        json={"status": "received"},
        headers={"Idempotency-Key": "recv-1"},
    )
    assert moved.status_code == 200
    replay = system_a.post(
        f"/referrals/{ids['school-1']}/transitions",
        json={"status": "received"},
        headers={"Idempotency-Key": "recv-1"},
    )
    assert replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    later = system_a.get(
        "/referrals/changes", query_string={"since": feed["next_cursor"]}
    ).get_json()
    assert [r["status"] for r in later["items"]] == ["received"]
    assert system_a.get("/referrals/changes?since=garbage!").status_code == 400

    keys = admin.get("/agencies/school-1/api-keys").get_json()
    assert len(keys) == 1 and "key" not in keys[0]
    rotated = admin.post(f"/agencies/school-1/api-keys/{keys[0]['key_id']}/rotate")
    assert rotated.status_code == 201
    assert system_a.get("/referrals/changes").status_code == 401
    assert (
        key_client(embedded_system, rotated.get_json()["key"]).get("/referrals/changes").status_code
        == 200
    )
    assert (
        admin.delete(f"/agencies/school-1/api-keys/{rotated.get_json()['key_id']}").status_code
        == 204
    )
    assert (
        key_client(embedded_system, rotated.get_json()["key"]).get("/referrals/changes").status_code
        == 401
    )


def test_signals_triage_over_http(embedded_system: System) -> None:
    setup_agencies(embedded_system)
    teacher = client(embedded_system, "agency_staff", agency="school-1", subject="teacher-1")
    body = {
        "district": "Тарнога",
        "observed": "ребёнок голоден",
        "priority": "red",
        "observed_at": dt.datetime.now(dt.UTC).isoformat(),
        "family": {"surname": "Петровы", "address": "ул. Лесная, 3"},
    }
    reported = teacher.post("/signals", json=body)
    assert reported.status_code == 201, reported.get_json()
    signal = reported.get_json()
    assert signal["priority"] == "red" and signal["status"] == "new"
    stranger = client(embedded_system, "agency_staff", agency="school-2")
    assert stranger.get(f"/signals/{signal['id']}").status_code == 404
    assert teacher.post(f"/signals/{signal['id']}/accept", json={}).status_code == 403
    coordinator = client(embedded_system, "coordinator", subject="coord-1")
    assert coordinator.post(f"/signals/{signal['id']}/dismiss", json={}).status_code == 422
    # A family id the registry never announced is refused at the request, nothing changed.
    unknown = coordinator.post(f"/signals/{signal['id']}/accept", json={"family_id": "fam-9"})
    assert unknown.status_code == 422 and "family_id" in unknown.get_json()["errors"]
    assert coordinator.get(f"/signals/{signal['id']}").get_json()["status"] == "new"
    with embedded_system.session("referrals") as session, session.begin():
        session.add(
            KnownFamily(family_id="fam-9", number="35-0009", district="Тарнога", family_version=1)
        )
    accepted = coordinator.post(f"/signals/{signal['id']}/accept", json={"family_id": "fam-9"})
    assert accepted.status_code == 200 and accepted.get_json()["status"] == "accepted"
    assert (
        coordinator.post(f"/signals/{signal['id']}/dismiss", json={"reason": "x"}).status_code
        == 409
    )
    future = {**body, "observed_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()}
    assert teacher.post("/signals", json=future).status_code == 422


def test_an_unrouted_draft_is_addressed_and_sent(embedded_system: System) -> None:
    setup_agencies(embedded_system)
    consent(embedded_system)
    specialist = client(embedded_system, "lead_specialist", subject="spec-1")
    draft = specialist.post("/referrals", json={**REFERRAL, "draft": True}).get_json()
    assert draft["status"] == "draft" and draft["agency_id"] is None
    unsent = specialist.post(f"/referrals/{draft['id']}/transitions", json={"status": "requested"})
    assert unsent.status_code == 422 and "agency_id" in unsent.get_json()["errors"]
    teacher = client(embedded_system, "agency_staff", agency="school-1")
    assert teacher.get(f"/referrals/{draft['id']}").status_code == 404  # drafts stay home
    unknown = specialist.put(f"/referrals/{draft['id']}/agency", json={"agency_id": "nope"})
    assert unknown.status_code == 404
    addressed = specialist.put(f"/referrals/{draft['id']}/agency", json={"agency_id": "school-1"})
    assert addressed.status_code == 200 and addressed.get_json()["agency_id"] == "school-1"
    sent = specialist.post(f"/referrals/{draft['id']}/transitions", json={"status": "requested"})
    assert sent.status_code == 200 and sent.get_json()["status"] == "requested"
    again = specialist.put(f"/referrals/{draft['id']}/agency", json={"agency_id": "school-2"})
    assert again.status_code == 409


def test_referrals_are_found_by_the_plan_measures_they_came_from(embedded_system: System) -> None:
    """The case workspace shows each agency measure's referral: one call for the whole plan."""
    setup_agencies(embedded_system)
    consent(embedded_system)
    specialist = client(embedded_system, "lead_specialist", subject="spec-1")
    made = {}
    for measure in ("m-1", "m-2", None):
        body = {**REFERRAL, "agency_id": "school-1", "measure_id": measure}
        answer = specialist.post("/referrals", json=body)
        assert answer.status_code == 201, answer.get_json()
        made[measure] = answer.get_json()["id"]

    both = specialist.get("/referrals?measure_id=m-1&measure_id=m-2").get_json()
    assert {r["id"] for r in both["items"]} == {made["m-1"], made["m-2"]}
    one = specialist.get("/referrals?measure_id=m-2").get_json()
    assert [(r["id"], r["measure_id"]) for r in one["items"]] == [(made["m-2"], "m-2")]
    assert specialist.get("/referrals?measure_id=m-9").get_json()["total"] == 0
    other_agency = client(embedded_system, "agency_staff", agency="school-2")
    assert other_agency.get("/referrals?measure_id=m-1").get_json()["total"] == 0
    addressed = client(embedded_system, "agency_staff", agency="school-1")
    assert addressed.get("/referrals?measure_id=m-1").get_json()["total"] == 1

    too_many = "&".join(f"measure_id=m-{n}" for n in range(101))
    refused = specialist.get(f"/referrals?{too_many}")
    assert refused.status_code == 422 and "measure_id" in refused.get_json()["errors"]
