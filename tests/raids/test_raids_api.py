"""The raids API end to end on SQLite and the file transport: scheduling with its rules,
invitations and calendars, visit acts and the report."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import icalendar
import pytest
from conftest import System, family_payload
from sqlalchemy import text

from services.raids.domain import remember_family
from shared.db import utcnow

pytestmark = pytest.mark.embedded

DISTRICT = "Тарногский район"
CENTRE = {"name": "с. Тарногский Городок", "latitude": 60.5, "longitude": 43.58}
DAY = (dt.date.today() + dt.timedelta(days=10)).isoformat()
PDN = {
    "person_id": "p-pdn",
    "agency_id": "pdn-tarnoga",
    "agency_kind": "police_pdn",
    "display_name": "Инспектор Орлов",
    "email": "orlov@pdn.test",
    "role": "inspector",
}
SOCIAL = {
    "person_id": "p-soc",
    "agency_id": "centre-tarnoga",
    "agency_kind": "family_centre",
    "display_name": "Специалист Белова",
    "email": "belova@centre.test",
    "role": "lead",
}
SCHOOL = {
    "person_id": "p-school",
    "agency_id": "school-1",
    "agency_kind": "school",
    "display_name": "Педагог Зайцева",
    "email": "zaitseva@school.test",
    "role": "member",
}
FAMILIES = [
    ("f-1", "Смирнова", "risk_group", "с. Тарногский Городок", 60.51, 43.60),
    ("f-2", "Кузнецов", "sop", "д. Заречье", 60.43, 43.71),
    ("f-3", "Попова", "tzhs", "с. Верховье", 60.62, 43.35),
    ("f-4", "Васильева", "risk_group", "с. Верховье", None, None),
]


def seed_families(system: System) -> None:
    with system.session("raids") as session, session.begin():
        for family_id, name, category, settlement, lat, lon in FAMILIES:
            remember_family(
                session,
                {
                    "family_id": family_id,
                    "number": f"F-{family_id[-1]}000",
                    "category": category,
                    "display_name": name,
                    "family_version": 1,
                    "address": {
                        "region": "Вологодская область",
                        "district": DISTRICT,
                        "settlement": settlement,
                        "street": "ул. Лесная",
                        "house": "4",
                        "latitude": lat,
                        "longitude": lon,
                    },
                },
                utcnow(),
            )


def client(system: System, role: str = "coordinator", subject: str | None = None) -> Any:
    c = system.app("raids").test_client()
    token = system.token(role, subject=subject or f"test-{role}")
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return c


def raid_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Рейд по семьям СОП",
        "purpose": "planned_check",
        "district": DISTRICT,
        "date": DAY,
        "start_time": "09:00",
        "end_time": "17:00",
        "centre": CENTRE,
        "organizer_email": "coordinator@district.test",
        "family_ids": ["f-1", "f-2", "f-3", "f-4"],
        "participants": [PDN, SOCIAL],
    }
    body.update(changes)
    return body


def outbox(system: System) -> list[dict[str, Any]]:
    with system.session("raids") as session:
        rows = session.execute(text("SELECT body FROM outbox ORDER BY id")).scalars().all()
    return [json.loads(r) for r in rows]


@pytest.fixture
def raids(embedded_system: System) -> System:
    seed_families(embedded_system)
    return embedded_system


def schedule(system: System, **changes: Any) -> dict[str, Any]:
    response = client(system).post("/raids", json=raid_body(**changes))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def events_of(system: System, name: str) -> list[dict[str, Any]]:
    return [e for e in outbox(system) if e["type"] == name]


def count(system: System, table: str) -> int:
    with system.session("raids") as session:
        return int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def participant(raid: dict[str, Any], person_id: str) -> dict[str, Any]:
    return next(p for p in raid["participants"] if p["person_id"] == person_id)


def confirm_everyone(system: System, raid: dict[str, Any]) -> None:
    for person in raid["participants"]:
        if person["state"] == "invited":
            response = client(system, "agency_staff", person["person_id"]).post(
                f"/raids/{raid['id']}/participants/{person['id']}/confirm"
            )
            assert response.status_code == 200, response.get_json()


def confirmed_raid(system: System, **changes: Any) -> dict[str, Any]:
    raid = schedule(system, **changes)
    confirm_everyone(system, raid)
    response = client(system).post(f"/raids/{raid['id']}/confirm")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


VISIT = {
    "family_id": "f-2",
    "outcome": "visited",
    "conditions": {
        "food": "insufficient",
        "cleanliness": "unsatisfactory",
        "heating": "adequate",
        "children_present": True,
        "children_state": "concerning",
        "adults_state": "intoxicated",
    },
    "children_seen": 2,
    "findings": "В холодильнике нет продуктов, отец в состоянии опьянения.",
    "actions_taken": "Передан продуктовый набор.",
    "urgent_concern": True,
    "urgent_reason": "Дети без присмотра взрослых в трезвом состоянии.",
    "followups": [
        {"service_code": "food_aid", "reason": "нет продуктов", "urgency": "priority"},
        {"service_code": "kdn_hearing", "reason": "поведение отца", "urgency": "urgent"},
    ],
}


# --- scheduling and its rules ------------------------------------------------------------------


def test_scheduling_orders_the_visits_invites_everyone_and_audits(raids: System) -> None:
    raid = schedule(raids)
    assert raid["status"] == "planned" and raid["sequence"] == 0
    assert raid["local_date"] == DAY and raid["local_start"] == "09:00"
    assert raid["starts_at"].startswith(f"{DAY}T06:00")  # Moscow is UTC+3
    positions = [f["position"] for f in raid["families"]]
    assert positions == [1, 2, 3, 4]
    route = raid["route"]
    assert route["fits_window"] and route["solver"] == "held-karp" and route["optimal"]
    assert [s["family_id"] for s in route["stops"]] == [f["family_id"] for f in raid["families"]]
    # f-3 and f-4 share a settlement, f-4 has no coordinates: placed there, next to f-3
    order = [f["family_id"] for f in raid["families"]]
    assert abs(order.index("f-3") - order.index("f-4")) == 1
    assert any("f-4" in w and "placed at its settlement" in w for w in raid["warnings"])
    assert raid["problems"]  # nobody has confirmed yet
    names = [e["type"] for e in outbox(raids)]
    assert names == ["raids.raid.scheduled"] + ["raids.participant.invited"] * 2
    invited = events_of(raids, "raids.participant.invited")[0]["data"]
    calendar = icalendar.Calendar.from_ical(invited["ics"])
    assert calendar["METHOD"] == "REQUEST"
    assert invited["ics_url"].endswith(f"/raids/{raid['id']}.ics") and invited["sequence"] == 0
    with raids.session("raids") as session:
        audited = session.execute(
            text("SELECT family_id FROM audit_log WHERE entity = 'raid' AND action = 'create'")
        ).scalars()
        assert sorted(audited) == ["f-1", "f-2", "f-3", "f-4"]


def test_a_raid_from_one_agency_is_refused_and_nothing_is_stored(raids: System) -> None:
    same_agency = {**SOCIAL, "person_id": "p-soc-2", "email": None}
    response = client(raids).post(
        "/raids", json=raid_body(participants=[SOCIAL, same_agency], family_ids=["f-1"])
    )
    assert response.status_code == 422
    problem = response.get_json()
    assert problem["type"].endswith("rule-violation")
    assert "at least 2 different agencies" in problem["errors"]["participants"][0]
    assert count(raids, "raids") == 0 and count(raids, "participants") == 0
    assert outbox(raids) == []


def test_an_sop_family_needs_a_police_juvenile_inspector_unless_configured_otherwise(
    raids: System,
) -> None:
    response = client(raids).post("/raids", json=raid_body(participants=[SOCIAL, SCHOOL]))
    assert response.status_code == 422
    message = response.get_json()["errors"]["participants"][0]
    assert "police_pdn" in message and "F-2000" in message
    assert "Кузнецов" not in json.dumps(response.get_json(), ensure_ascii=False)
    # without the sop family, the same team is fine
    ok = client(raids).post(
        "/raids", json=raid_body(participants=[SOCIAL, SCHOOL], family_ids=["f-1"])
    )
    assert ok.status_code == 201
    relaxed_app = raids.app_with("raids", RAIDS_SOP_REQUIRED_AGENCY_KINDS="").test_client()
    relaxed_app.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {raids.token('coordinator')}"
    relaxed = relaxed_app.post(
        "/raids",
        json=raid_body(participants=[SOCIAL, SCHOOL], start_time="18:00", end_time="20:00"),
    )
    assert relaxed.status_code == 201, relaxed.get_json()


def test_a_person_cannot_be_on_two_overlapping_raids(raids: System) -> None:
    first = schedule(raids, family_ids=["f-1"])
    clash = client(raids).post(
        "/raids",
        json=raid_body(family_ids=["f-3"], start_time="16:00", end_time="19:00"),
    )
    assert clash.status_code == 422
    errors = clash.get_json()["errors"]
    assert set(errors) == {"participants.0.person_id", "participants.1.person_id"}
    assert first["id"] in errors["participants.0.person_id"][0]
    later = client(raids).post(
        "/raids", json=raid_body(family_ids=["f-3"], start_time="17:00", end_time="19:00")
    )
    assert later.status_code == 201  # touching windows do not overlap
    # once declined, the person is free for another raid at that time
    pdn = participant(first, "p-pdn")
    client(raids, "agency_staff", "p-pdn").post(
        f"/raids/{first['id']}/participants/{pdn['id']}/decline", json={"reason": "суд"}
    )
    other = client(raids).post(
        "/raids",
        json=raid_body(
            family_ids=["f-3"],
            start_time="10:00",
            end_time="12:00",
            participants=[PDN, SCHOOL],
        ),
    )
    assert other.status_code == 201, other.get_json()


def test_declared_absences_are_respected(raids: System) -> None:
    raid = schedule(raids, family_ids=["f-1"])
    pdn = participant(raid, "p-pdn")
    absence = client(raids, "agency_staff", "p-pdn").post(
        "/people/p-pdn/absences",
        json={"starts_on": DAY, "ends_on": DAY, "kind": "sick"},
    )
    assert absence.status_code == 201, absence.get_json()
    assert absence.get_json()["affected_raids"] == [raid["id"]]
    confirm = client(raids, "agency_staff", "p-pdn").post(
        f"/raids/{raid['id']}/participants/{pdn['id']}/confirm"
    )
    assert confirm.status_code == 422
    assert "declared an absence (sick" in json.dumps(confirm.get_json())
    again = client(raids).post(
        "/raids", json=raid_body(family_ids=["f-3"], start_time="18:00", end_time="20:00")
    )
    assert again.status_code == 422
    assert "participants.0.person_id" in again.get_json()["errors"]
    detail = client(raids).get(f"/raids/{raid['id']}").get_json()
    assert any("declared an absence" in p for p in detail["problems"])
    # someone else cannot declare p-pdn's absence; the coordinator can
    other = client(raids, "agency_staff", "p-soc").post(
        "/people/p-pdn/absences", json={"starts_on": DAY, "ends_on": DAY, "kind": "leave"}
    )
    assert other.status_code == 403
    listed = client(raids, "agency_staff", "p-pdn").get("/people/p-pdn/absences").get_json()
    assert listed["total"] == 1
    absence_id = listed["items"][0]["id"]
    gone = client(raids, "agency_staff", "p-pdn").delete(f"/people/p-pdn/absences/{absence_id}")
    assert gone.status_code == 204
    confirm = client(raids, "agency_staff", "p-pdn").post(
        f"/raids/{raid['id']}/participants/{pdn['id']}/confirm"
    )
    assert confirm.status_code == 200


def test_bad_input_is_a_problem_with_the_field(raids: System) -> None:
    cases = [
        (raid_body(timezone="Mars/Olympus"), "timezone"),
        (raid_body(end_time="08:00"), "end_time"),
        (raid_body(family_ids=["nope"]), "family_ids.0"),
        (raid_body(participants=[]), "participants"),
        (raid_body(purpose="party"), "purpose"),
        (
            {**raid_body(), "centre": {"name": "x", "latitude": 100, "longitude": 1}},
            "centre.latitude",
        ),
    ]
    for body, field in cases:
        response = client(raids).post("/raids", json=body)
        assert response.status_code == 422, (field, response.get_json())
        assert response.content_type == "application/problem+json"
        assert field in response.get_json()["errors"], (field, response.get_json())
    assert count(raids, "raids") == 0
    assert client(raids).get("/raids/nope").status_code == 404
    assert client(raids, "lead_specialist").post("/raids", json=raid_body()).status_code == 403


def test_idempotency_key_gives_one_raid(raids: System) -> None:
    headers = {"Idempotency-Key": "raid-2026-12-03"}
    first = client(raids).post("/raids", json=raid_body(), headers=headers)
    second = client(raids).post("/raids", json=raid_body(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.get_json()["id"] == second.get_json()["id"]
    assert count(raids, "raids") == 1


# --- invitations and changes -------------------------------------------------------------------


def test_invitations_confirm_decline_and_replacement(raids: System) -> None:
    raid = schedule(raids)
    pdn, soc = participant(raid, "p-pdn"), participant(raid, "p-soc")
    url = f"/raids/{raid['id']}/participants"
    assert (
        client(raids, "agency_staff", "p-soc").post(f"{url}/{pdn['id']}/confirm").status_code == 403
    )
    assert (
        client(raids, "agency_staff", "p-pdn").post(f"{url}/{pdn['id']}/confirm").status_code == 200
    )
    no_reason = client(raids, "agency_staff", "p-soc").post(f"{url}/{soc['id']}/decline", json={})
    assert no_reason.status_code == 422 and "reason" in no_reason.get_json()["errors"]
    declined = client(raids, "agency_staff", "p-soc").post(
        f"{url}/{soc['id']}/decline", json={"reason": "отпуск"}
    )
    assert declined.get_json()["state"] == "declined"
    [event] = events_of(raids, "raids.participant.declined")
    assert event["data"]["reason"] == "отпуск"
    assert any("at least 2 different agencies" in p for p in event["data"]["raid_problems"])
    refused = client(raids).post(f"/raids/{raid['id']}/confirm")
    assert refused.status_code == 422
    replacement = client(raids).post(f"{url}/{soc['id']}/replacement", json=SCHOOL)
    assert replacement.status_code == 201
    assert replacement.get_json()["replaces_id"] == soc["id"]
    invited = events_of(raids, "raids.participant.invited")[-1]["data"]
    assert invited["person_id"] == "p-school" and invited["replaces_participant_id"] == soc["id"]
    client(raids, "agency_staff", "p-school").post(f"{url}/{replacement.get_json()['id']}/confirm")
    confirmed = client(raids).post(f"/raids/{raid['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.get_json()
    assert confirmed.get_json()["status"] == "confirmed" and confirmed.get_json()["problems"] == []
    assert client(raids).post(f"{url}", json=PDN).status_code == 409  # already on the raid


def test_moving_the_time_resets_confirmations_and_sends_an_update(raids: System) -> None:
    raid = confirmed_raid(raids)
    moved = client(raids).patch(f"/raids/{raid['id']}", json={"start_time": "10:00"})
    assert moved.status_code == 200, moved.get_json()
    body = moved.get_json()
    assert body["status"] == "planned" and body["local_start"] == "10:00"
    assert {p["state"] for p in body["participants"]} == {"invited"}
    assert body["sequence"] == raid["sequence"] + 1
    update = events_of(raids, "raids.raid.updated")[-1]["data"]
    assert update["reconfirmation_required"] and update["changes"] == ["time"]
    event = icalendar.Calendar.from_ical(update["ics"]).walk("VEVENT")[0]
    assert int(event["SEQUENCE"]) == body["sequence"]
    assert event.decoded("DTSTART").hour == 10
    title = client(raids).patch(f"/raids/{raid['id']}", json={"title": "Новое название"})
    assert title.get_json()["sequence"] == body["sequence"] + 1
    nothing = client(raids).patch(f"/raids/{raid['id']}", json={"title": "Новое название"})
    assert nothing.get_json()["sequence"] == body["sequence"] + 1


def test_cancellation_sends_method_cancel_and_freezes_the_raid(raids: System) -> None:
    raid = schedule(raids)
    no_reason = client(raids).post(f"/raids/{raid['id']}/cancel", json={})
    assert no_reason.status_code == 422
    cancelled = client(raids).post(f"/raids/{raid['id']}/cancel", json={"reason": "метель"})
    assert cancelled.get_json()["status"] == "cancelled"
    [event] = events_of(raids, "raids.raid.cancelled")
    calendar = icalendar.Calendar.from_ical(event["data"]["ics"])
    assert calendar["METHOD"] == "CANCEL"
    assert calendar.walk("VEVENT")[0]["STATUS"] == "CANCELLED"
    assert int(calendar.walk("VEVENT")[0]["SEQUENCE"]) == 1
    served = client(raids).get(f"/raids/{raid['id']}.ics")
    assert icalendar.Calendar.from_ical(served.data)["METHOD"] == "CANCEL"
    assert client(raids).patch(f"/raids/{raid['id']}", json={"title": "x"}).status_code == 409
    assert client(raids).post(f"/raids/{raid['id']}/confirm").status_code == 409


# --- calendars ---------------------------------------------------------------------------------


def test_raid_calendar_reads_back_with_organizer_attendees_location_and_alarms(
    raids: System,
) -> None:
    raid = schedule(raids)
    response = client(raids).get(f"/raids/{raid['id']}.ics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(response.data)
    assert calendar["VERSION"] == "2.0" and calendar["METHOD"] == "REQUEST"
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == f"raid-{raid['id']}@raids.opora"
    assert str(event["ORGANIZER"]) == "mailto:coordinator@district.test"
    attendees = sorted(str(a) for a in event["ATTENDEE"])
    assert attendees == ["mailto:belova@centre.test", "mailto:orlov@pdn.test"]
    assert {a.params["PARTSTAT"] for a in event["ATTENDEE"]} == {"NEEDS-ACTION"}
    assert str(event["LOCATION"]) == CENTRE["name"]
    assert event.decoded("DTSTART").isoformat() == f"{DAY}T09:00:00+03:00"
    assert str(event["DTSTART"].params["TZID"]) == "Europe/Moscow"
    alarms = event.walk("VALARM")
    assert len(alarms) == 2 and {str(a["ACTION"]) for a in alarms} == {"DISPLAY"}
    assert calendar.walk("VTIMEZONE")
    text_ics = response.data.decode()
    for name, *_ in [(f[1],) for f in FAMILIES]:
        assert name not in text_ics  # the .ics travels by email: no family names


def test_person_feed_lists_the_persons_raids(raids: System) -> None:
    first = schedule(raids, family_ids=["f-1"])
    second = schedule(
        raids, family_ids=["f-3"], start_time="18:00", end_time="20:00", participants=[PDN, SCHOOL]
    )
    client(raids).post(f"/raids/{second['id']}/cancel", json={"reason": "перенос"})
    feed = client(raids, "agency_staff", "p-pdn").get("/people/p-pdn/raids.ics")
    assert feed.status_code == 200
    calendar = icalendar.Calendar.from_ical(feed.data)
    assert calendar["METHOD"] == "PUBLISH"
    events = {str(e["UID"]): str(e["STATUS"]) for e in calendar.walk("VEVENT")}
    assert events == {
        f"raid-{first['id']}@raids.opora": "TENTATIVE",
        f"raid-{second['id']}@raids.opora": "CANCELLED",
    }
    soc_feed = icalendar.Calendar.from_ical(
        client(raids, "agency_staff", "p-soc").get("/people/p-soc/raids.ics").data
    )
    assert len(soc_feed.walk("VEVENT")) == 1
    assert client(raids, "agency_staff", "p-soc").get("/people/p-pdn/raids.ics").status_code == 403
    assert client(raids, "lead_specialist").get("/people/p-pdn/raids.ics").status_code == 200


def test_a_calendar_app_subscribes_with_the_signed_feed_link(raids: System) -> None:
    raid = schedule(raids, family_ids=["f-1"])
    link = client(raids, "agency_staff", "p-pdn").get("/people/p-pdn/feed-url")
    assert link.status_code == 200
    url = link.get_json()["url"]
    assert url.startswith("https://opora.test/people/p-pdn/calendar.ics?token=")
    path = url.removeprefix("https://opora.test")
    anonymous = raids.app("raids").test_client()  # a calendar app: no bearer token
    feed = anonymous.get(path)
    assert feed.status_code == 200
    uids = {str(e["UID"]) for e in icalendar.Calendar.from_ical(feed.data).walk("VEVENT")}
    assert uids == {f"raid-{raid['id']}@raids.opora"}

    token = path.split("token=")[1]
    for bad in (
        f"/people/p-soc/calendar.ics?token={token}",  # someone else's feed with my link
        f"/people/p-pdn/calendar.ics?token={token[:-2]}xx",  # tampered
        "/people/p-pdn/calendar.ics",  # no link at all
    ):
        refused = anonymous.get(bad)
        assert refused.status_code in (401, 422), bad
        assert refused.mimetype == "application/problem+json"
    assert client(raids, "agency_staff", "p-soc").get("/people/p-pdn/feed-url").status_code == 403


# --- visits and the report ---------------------------------------------------------------------


def test_recording_visits_publishes_the_act_followups_and_the_concern(raids: System) -> None:
    raid = confirmed_raid(raids)
    recorder = client(raids, "agency_staff", "p-pdn")
    response = recorder.post(f"/raids/{raid['id']}/visits", json=VISIT)
    assert response.status_code == 201, response.get_json()
    act = response.get_json()
    assert act["participant_ids"] == ["p-pdn", "p-soc"]
    assert len(act["followups"]) == 2 and all(f["followup_id"] for f in act["followups"])
    detail = client(raids).get(f"/raids/{raid['id']}").get_json()
    assert detail["status"] == "in_progress"  # the first act starts a confirmed raid
    [recorded] = events_of(raids, "raids.visit.recorded")
    data = recorded["data"]
    assert data["family_id"] == "f-2" and data["outcome"] == "visited" and data["urgent_concern"]
    assert data["agencies"] == ["centre-tarnoga", "pdn-tarnoga"]
    assert (
        data["visited_on"]
        == dt.datetime.now(dt.UTC)
        .astimezone(__import__("zoneinfo").ZoneInfo("Europe/Moscow"))
        .date()
        .isoformat()
    )
    assert "food_aid" in data["summary"] and data["recorded_by"] == "p-pdn"
    followups = events_of(raids, "raids.followup.requested")
    assert sorted(f["data"]["service_code"] for f in followups) == ["food_aid", "kdn_hearing"]
    assert {f["data"]["visit_id"] for f in followups} == {act["id"]}
    [concern] = events_of(raids, "raids.concern.raised")
    assert concern["data"]["family_number"] == "F-2000"
    assert concern["data"]["coordinator_id"] == "test-coordinator"
    assert "Кузнецов" not in json.dumps(concern, ensure_ascii=False)

    again = recorder.post(f"/raids/{raid['id']}/visits", json=VISIT)
    assert again.status_code == 409
    stranger = client(raids, "agency_staff", "p-other").post(
        f"/raids/{raid['id']}/visits", json={**VISIT, "family_id": "f-1"}
    )
    assert stranger.status_code == 403
    not_on_raid = recorder.post(f"/raids/{raid['id']}/visits", json={**VISIT, "family_id": "f-99"})
    assert not_on_raid.status_code == 422 and "family_id" in not_on_raid.get_json()["errors"]
    no_checklist = recorder.post(
        f"/raids/{raid['id']}/visits",
        json={"family_id": "f-1", "outcome": "visited", "urgent_concern": False},
    )
    assert no_checklist.status_code == 422 and "conditions" in no_checklist.get_json()["errors"]
    bad_checklist = recorder.post(
        f"/raids/{raid['id']}/visits",
        json={**VISIT, "family_id": "f-1", "conditions": {**VISIT["conditions"], "food": "?"}},
    )
    assert "conditions.food" in bad_checklist.get_json()["errors"]
    nobody = recorder.post(
        f"/raids/{raid['id']}/visits",
        json={"family_id": "f-1", "outcome": "nobody_home", "participant_ids": ["p-pdn"]},
    )
    assert nobody.status_code == 201
    assert len(events_of(raids, "raids.visit.recorded")) == 2
    listed = client(raids, "lead_specialist").get(f"/raids/{raid['id']}/visits").get_json()
    assert listed["total"] == 2
    one = client(raids, "lead_specialist").get(f"/raids/{raid['id']}/visits/{act['id']}")
    assert one.get_json()["findings"] == VISIT["findings"]


def test_completion_needs_every_act_or_a_note_and_the_report_tells_it_all(raids: System) -> None:
    raid = confirmed_raid(raids)
    client(raids, "agency_staff", "p-soc").post(f"/raids/{raid['id']}/visits", json=VISIT)
    early = client(raids).post(f"/raids/{raid['id']}/complete", json={})
    assert early.status_code == 422 and set(early.get_json()["errors"]["family_ids"]) == {
        "f-1",
        "f-3",
        "f-4",
    }
    done = client(raids).post(
        f"/raids/{raid['id']}/complete",
        json={"allow_unvisited": True, "note": "Не успели: распутица."},
    )
    assert done.status_code == 200 and done.get_json()["status"] == "completed"
    [completed] = events_of(raids, "raids.raid.completed")
    assert completed["data"]["outcomes"] == {"visited": 1}
    assert completed["data"]["followups_requested"] == 2
    assert sorted(completed["data"]["not_visited"]) == ["f-1", "f-3", "f-4"]

    report = client(raids, "lead_specialist").get(f"/raids/{raid['id']}/report")
    assert report.status_code == 200
    body = report.get_json()
    assert body["totals"] == {
        "families_planned": 4,
        "outcomes": {"visited": 1},
        "not_visited": 3,
        "followups": 2,
        "urgent_concerns": 1,
    }
    assert [p["took_part"] for p in body["participants"]] == [True, True]
    kuznetsov = next(f for f in body["families"] if f["family_id"] == "f-2")
    assert kuznetsov["display_name"] == "Кузнецов" and kuznetsov["visit"]["urgent_concern"]
    printable = client(raids, "lead_specialist").get(f"/raids/{raid['id']}/report.html")
    assert printable.content_type.startswith("text/html")
    page = printable.data.decode()
    assert "Отчёт о межведомственном рейде" in page and "@media print" in page
    assert "Кузнецов" in page and "food_aid" in page and "СРОЧНО" in page
    assert (
        client(raids, "agency_staff", "p-pdn").get(f"/raids/{raid['id']}/report").status_code == 403
    )
    with raids.session("raids") as session:
        actions = (
            session.execute(
                text("SELECT action FROM audit_log WHERE entity = 'raid' AND family_id = 'f-2'")
            )
            .scalars()
            .all()
        )
    assert "export" in actions and "read" in actions


def test_escaping_in_the_printable_report(raids: System) -> None:
    raid = confirmed_raid(raids, family_ids=["f-1"])
    client(raids).post(
        f"/raids/{raid['id']}/visits",
        json={**VISIT, "family_id": "f-1", "findings": "<script>alert(1)</script>"},
    )
    page = client(raids).get(f"/raids/{raid['id']}/report.html").data.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_a_family_visited_recently_by_another_raid_is_a_warning(raids: System) -> None:
    first = confirmed_raid(raids, family_ids=["f-1"])
    client(raids).post(
        f"/raids/{first['id']}/visits",
        json={"family_id": "f-1", "outcome": "nobody_home"},
    )
    second = schedule(raids, family_ids=["f-1"], start_time="18:00", end_time="20:00")
    assert any(f"raid {first['id']}" in w and "visited" in w for w in second["warnings"])


def test_lists_are_paginated_and_staff_see_their_own_raids(raids: System) -> None:
    schedule(raids, family_ids=["f-1"])
    schedule(
        raids,
        family_ids=["f-3"],
        start_time="18:00",
        end_time="20:00",
        participants=[SOCIAL, SCHOOL],
    )
    page = client(raids, "lead_specialist").get("/raids?page_size=1").get_json()
    assert page["total"] == 2 and page["pages"] == 2 and len(page["items"]) == 1
    assert "families" not in page["items"][0]
    mine = client(raids, "agency_staff", "p-pdn").get("/raids").get_json()
    assert mine["total"] == 1
    theirs = client(raids, "agency_staff", "p-pdn").get("/raids?person_id=p-school").get_json()
    assert theirs["total"] == 1  # staff cannot look at someone else's raids
    dated = client(raids).get(f"/raids?starts_from={DAY}&starts_until={DAY}").get_json()
    assert dated["total"] == 2
    known = client(raids).get(f"/families?district={DISTRICT}&page_size=2").get_json()
    assert known["total"] == 4 and len(known["items"]) == 2
    other = schedule(raids, family_ids=["f-4"], start_time="06:00", end_time="08:00")
    forbidden = client(raids, "agency_staff", "p-school").get(f"/raids/{other['id']}")
    assert forbidden.status_code == 403


def test_route_can_be_replanned_with_a_measured_matrix(raids: System) -> None:
    raid = schedule(raids, family_ids=["f-1", "f-2", "f-3"])
    # by road, f-3 is next to the centre and f-1 far from it: the order must follow the matrix
    order = ["f-3", "f-2", "f-1"]
    matrix = [[0, 5, 50, 50], [5, 0, 5, 50], [50, 5, 0, 5], [50, 50, 5, 0]]
    # centre -> f-3 -> f-2 -> f-1 -> centre would be 5+5+5+50; the matrix is not symmetric
    matrix[3][0] = 5
    plan = client(raids).post(
        f"/raids/{raid['id']}/route", json={"distance_km": matrix, "family_ids": order}
    )
    assert plan.status_code == 200, plan.get_json()
    body = plan.get_json()
    assert body["total_km"] == 20.0
    assert [s["family_id"] for s in body["stops"]] == order
    assert body["solver"] == "held-karp" and body["optimal"]
    detail = client(raids).get(f"/raids/{raid['id']}").get_json()
    assert [f["family_id"] for f in detail["families"]] == order
    assert client(raids).get(f"/raids/{raid['id']}/route").get_json()["total_km"] == 20.0
    bad = client(raids).post(
        f"/raids/{raid['id']}/route", json={"distance_km": [[0, 1]], "family_ids": order}
    )
    assert bad.status_code == 422 and "distance_km" in bad.get_json()["errors"]
    unnamed = client(raids).post(f"/raids/{raid['id']}/route", json={"distance_km": matrix})
    assert unnamed.status_code == 422 and "family_ids" in unnamed.get_json()["errors"]
    again = client(raids).post(f"/raids/{raid['id']}/route", json={})
    assert again.status_code == 200 and again.get_json()["solver"] == "held-karp"


def test_a_plan_that_does_not_fit_the_window_is_flagged(raids: System) -> None:
    raid = schedule(raids, start_time="09:00", end_time="10:00", minutes_per_visit=45)
    assert not raid["route"]["fits_window"]
    assert "does not fit the raid's window" in raid["warnings"][0]


def test_a_monthly_series_creates_raids_or_nothing(raids: System) -> None:
    body = {"frequency": "monthly", "occurrences": 3, "raid": raid_body(family_ids=["f-1"])}
    created = client(raids).post("/series", json=body)
    assert created.status_code == 201, created.get_json()
    series = created.get_json()
    dates = [r["local_date"] for r in series["raids"]]
    assert len(dates) == 3 and dates[0] == DAY and len({d[5:7] for d in dates}) == 3
    assert count(raids, "raids") == 3
    assert len(events_of(raids, "raids.raid.scheduled")) == 3
    # a second series at the same times double-books the team: refused as a whole
    clash = client(raids).post("/series", json=body)
    assert clash.status_code == 422
    assert len(clash.get_json()["errors"]) == 3
    assert count(raids, "raids") == 3 and count(raids, "raid_series") == 1
    cancelled = client(raids).post(f"/series/{series['id']}/cancel", json={"reason": "карантин"})
    assert {r["status"] for r in cancelled.get_json()["raids"]} == {"cancelled"}
    assert client(raids).get("/series").get_json()["total"] == 1


def test_the_openapi_document_lists_the_raids_api(raids: System) -> None:
    spec = client(raids).get("/openapi.json").get_json()
    paths = spec["paths"]
    for path in (
        "/raids",
        "/raids/{raid_id}",
        "/raids/{raid_id}.ics",
        "/raids/{raid_id}/participants/{participant_id}/decline",
        "/raids/{raid_id}/visits",
        "/raids/{raid_id}/report.html",
        "/people/{person_id}/raids.ics",
        "/people/{person_id}/absences",
        "/series",
    ):
        assert path in paths, path
    post = paths["/raids"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in post.get("parameters", []))


def test_embedded_mode_registry_family_to_a_planned_raid(embedded_system: System) -> None:
    """The same path as on RabbitMQ, on the file transport: registry write -> raids read model
    -> a raid planned with that family."""
    system = embedded_system
    payload = family_payload("Жукова")
    payload["address"].update(latitude=60.55, longitude=43.7)
    registered = system.client("registry").post("/families", json=payload)
    assert registered.status_code == 201, registered.get_json()
    family_id = registered.get_json()["id"]
    assert system.relay("registry") >= 1
    system.consume("raids")
    response = client(system).post("/raids", json=raid_body(family_ids=[family_id]))
    assert response.status_code == 201, response.get_json()
    [stop] = response.get_json()["families"]
    assert stop["display_name"] == "Жукова" and stop["placement"] == "coordinates"
    assert system.relay("raids") == 3  # raid.scheduled and two invitations
