"""Raids on the real RabbitMQ and PostgreSQL: registry family events feed the read model a raid
is planned from, and a recorded visit's events reach the broker for the registry and the
referrals service."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pika
import pytest
from conftest import System, family_payload, publish_event

from services.raids.models import KnownFamily

pytestmark = pytest.mark.integration

DISTRICT = "Тарногский район"
DAY = (dt.date.today() + dt.timedelta(days=7)).isoformat()
TEAM = [
    {
        "person_id": "p-pdn",
        "agency_id": "pdn",
        "agency_kind": "police_pdn",
        "display_name": "Инспектор",
        "email": "pdn@x.test",
    },
    {
        "person_id": "p-soc",
        "agency_id": "centre",
        "agency_kind": "family_centre",
        "display_name": "Специалист",
        "email": "soc@x.test",
    },
]


def client(system: System, role: str = "coordinator", subject: str | None = None) -> Any:
    c = system.app("raids").test_client()
    token = system.token(role, subject=subject or f"test-{role}")
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return c


def register(system: System, surname: str, lat: float, lon: float, **extra: Any) -> str:
    payload = family_payload(surname, **extra)
    payload["address"].update(latitude=lat, longitude=lon)
    response = system.client("registry").post("/families", json=payload)
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def test_registry_families_reach_the_read_model_and_a_raid_is_planned_with_them(
    system: System,
) -> None:
    near = register(system, "Петрова", 60.51, 43.60)
    far = register(system, "Сидорова", 60.70, 43.10)
    assert system.relay("registry") >= 2
    system.consume("raids")
    with system.session("raids") as session:
        known = session.get(KnownFamily, near)
        assert known is not None and known.display_name == "Петрова" and known.latitude == 60.51

    body = {
        "title": "Плановый рейд",
        "purpose": "planned_check",
        "district": DISTRICT,
        "date": DAY,
        "start_time": "09:00",
        "end_time": "17:00",
        "centre": {"name": "Тарногский Городок", "latitude": 60.5, "longitude": 43.58},
        "family_ids": [far, near],
        "participants": TEAM,
    }
    response = client(system).post("/raids", json=body)
    assert response.status_code == 201, response.get_json()
    raid = response.get_json()
    assert [f["family_id"] for f in raid["families"]] in ([near, far], [far, near])
    assert {f["display_name"] for f in raid["families"]} == {"Петрова", "Сидорова"}
    assert raid["route"]["fits_window"]

    # a later snapshot saying the family left the data bank: it can no longer be planned
    with system.session("raids") as session:
        family = session.get(KnownFamily, far)
        snapshot = {
            "family_id": far,
            "number": family.number,
            "category": "sop",
            "address": {**family.address},
            "display_name": "Сидорова",
            "children_count": 1,
            "family_version": family.family_version + 1,
            "removed": True,
        }
    publish_event(system, "registry.family.updated", snapshot)
    system.consume("raids")
    with system.session("raids") as session:
        updated = session.get(KnownFamily, far)
        assert updated.removed and updated.category == "sop"
    warnings = client(system).get(f"/raids/{raid['id']}").get_json()["warnings"]
    assert any("removed from the data bank" in w for w in warnings)
    refused = client(system).post(
        "/raids", json={**body, "family_ids": [far], "start_time": "18:00", "end_time": "20:00"}
    )
    assert refused.status_code == 422
    assert "removed" in refused.get_json()["errors"]["family_ids.0"][0]


def test_a_recorded_visit_reaches_the_broker_as_visit_followups_and_concern(
    system: System,
) -> None:
    family_id = register(system, "Кузнецова", 60.43, 43.71)
    system.relay("registry")
    system.consume("raids")

    # a queue of the test's own on the events exchange: what the registry and referrals get
    connection = pika.BlockingConnection(pika.URLParameters(system.broker_url))
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, f"{system.prefix}.events", routing_key="raids.#")

    body = {
        "title": "Рейд по сигналу",
        "purpose": "complaint_followup",
        "district": DISTRICT,
        "date": DAY,
        "start_time": "09:00",
        "end_time": "12:00",
        "centre": {"name": "Тарногский Городок", "latitude": 60.5, "longitude": 43.58},
        "family_ids": [family_id],
        "participants": TEAM,
    }
    raid = client(system).post("/raids", json=body).get_json()
    for person in raid["participants"]:
        answer = client(system, "agency_staff", person["person_id"]).post(
            f"/raids/{raid['id']}/participants/{person['id']}/confirm"
        )
        assert answer.status_code == 200
    assert client(system).post(f"/raids/{raid['id']}/confirm").status_code == 200
    visit = client(system, "agency_staff", "p-soc").post(
        f"/raids/{raid['id']}/visits",
        json={
            "family_id": family_id,
            "outcome": "visited",
            "conditions": {
                "food": "none",
                "cleanliness": "unsanitary",
                "heating": "none",
                "children_present": True,
                "children_state": "danger",
                "adults_state": "intoxicated",
            },
            "children_seen": 1,
            "findings": "Дом не отапливается.",
            "urgent_concern": True,
            "urgent_reason": "Ребёнок в холодном доме.",
            "followups": [
                {"service_code": "food_aid", "reason": "нет еды", "urgency": "urgent"},
                {"service_code": "kdn_hearing", "reason": "родитель пьёт"},
            ],
        },
    )
    assert visit.status_code == 201, visit.get_json()
    assert system.relay("raids") >= 8

    received: dict[str, list[dict[str, Any]]] = {}
    for _ in range(50):
        method, _props, payload = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        envelope = json.loads(payload)
        received.setdefault(envelope["type"], []).append(envelope)
    connection.close()

    [recorded] = received["raids.visit.recorded"]
    assert recorded["producer"] == "raids"
    assert recorded["data"]["family_id"] == family_id
    assert recorded["data"]["outcome"] == "visited" and recorded["data"]["urgent_concern"]
    assert recorded["data"]["agencies"] == ["centre", "pdn"]
    followups = received["raids.followup.requested"]
    assert sorted(f["data"]["service_code"] for f in followups) == ["food_aid", "kdn_hearing"]
    assert {f["data"]["family_id"] for f in followups} == {family_id}
    [concern] = received["raids.concern.raised"]
    assert concern["data"]["coordinator_id"] == "test-coordinator"
    assert "Кузнецова" not in json.dumps(concern, ensure_ascii=False)
    assert len(received["raids.participant.invited"]) == 2
    assert "raids.raid.scheduled" in received and "raids.participant.confirmed" in received
