"""Referrals on the real RabbitMQ and PostgreSQL: a plan measure assigned in the registry becomes
one referral (redelivery included); its status changes reach the broker for the registry; two
agency systems with their API keys see only their own referrals."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pika
import pytest
from conftest import System, publish_event
from sqlalchemy import select

from services.referrals import directory
from services.referrals.models import Referral

pytestmark = pytest.mark.integration

TODAY = dt.date.today()


def seed(system: System) -> None:
    with system.session("referrals") as session, session.begin():
        for agency_id in ("school-1", "school-2"):
            directory.create_agency(
                session,
                {
                    "id": agency_id,
                    "name": agency_id,
                    "kind": "school",
                    "districts": ["Тарнога"],
                    "services": ["truancy_work"],
                },
                dt.datetime.now(dt.UTC),
            )


def test_measure_assigned_becomes_one_referral_and_its_status_reaches_the_broker(
    system: System,
) -> None:
    seed(system)
    agreement = {
        "agreement_id": str(uuid.uuid4()),
        "case_id": str(uuid.uuid4()),
        "family_id": "fam-1",
        "signed_on": (TODAY - dt.timedelta(days=1)).isoformat(),
        "valid_until": (TODAY + dt.timedelta(days=100)).isoformat(),
        "consent_data_processing": True,
        "share_with": ["school"],
    }
    measure = {
        "measure_id": str(uuid.uuid4()),
        "case_id": agreement["case_id"],
        "family_id": "fam-1",
        "number": "Т-001",
        "district": "Тарнога",
        "agency_id": "school-1",
        "kind": "truancy_work",
        "title": "Работа с пропусками",
        "deadline": (TODAY + dt.timedelta(days=30)).isoformat(),
        "status": "referred",
        "measure_version": 2,
    }
    publish_event(system, "registry.agreement.recorded", agreement, event_id=str(uuid.uuid4()))
    system.consume("referrals")
    event_id = str(uuid.uuid4())
    publish_event(system, "registry.measure.assigned", measure, event_id=event_id)
    publish_event(system, "registry.measure.assigned", measure, event_id=event_id)  # a redelivery
    publish_event(
        system, "registry.measure.assigned", measure, event_id=str(uuid.uuid4())
    )  # a re-send
    system.consume("referrals")
    with system.session("referrals") as session:
        referrals = session.scalars(select(Referral)).all()
        assert len(referrals) == 1
        referral = referrals[0]
        assert referral.status == "requested" and referral.measure_id == measure["measure_id"]

    # a test queue on the events exchange sees what the registry's queue would get
    connection = pika.BlockingConnection(pika.URLParameters(system.broker_url))
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, f"{system.prefix}.events", "referrals.referral.status_changed")
    system.relay("referrals")  # the creation's events
    while channel.basic_get(queue, auto_ack=True)[0] is not None:
        pass

    agency = system.app("referrals").test_client()
    agency.environ_base["HTTP_AUTHORIZATION"] = "Bearer " + system.token(
        "agency_staff", agency="school-1", subject="teacher-1"
    )
    for status in ("received", "accepted"):
        response = agency.post(f"/referrals/{referral.id}/transitions", json={"status": status})
        assert response.status_code == 200, response.get_json()
    assert system.relay("referrals") == 2
    bodies = []
    for _ in range(50):
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            if len(bodies) == 2:
                break
            connection.sleep(0.1)
            continue
        bodies.append(json.loads(body))
    connection.close()
    assert [b["data"]["status"] for b in bodies] == ["received", "accepted"]
    last = bodies[-1]["data"]
    assert last["measure_id"] == measure["measure_id"] and last["previous_status"] == "received"
    assert last["by"] == "teacher-1" and last["referral_version"] == 4


def test_two_agency_systems_see_only_their_own_referrals(system: System) -> None:
    seed(system)
    coordinator = system.client("referrals", "coordinator")
    keys, ids = {}, {}
    for agency_id in ("school-1", "school-2"):
        created = coordinator.post(
            "/referrals",
            json={
                "family_id": f"fam-{agency_id}",
                "family_number": "Т-1",
                "district": "Тарнога",
                "service_code": "truancy_work",
                "agency_id": agency_id,
                "reason": "пропуски",
                "contact": {"person_id": "spec-1"},
                "consent_override_reason": "тест",
            },
        )
        assert created.status_code == 201, created.get_json()
        ids[agency_id] = created.get_json()["id"]
        keys[agency_id] = coordinator.post(
            f"/agencies/{agency_id}/api-keys", json={"name": "АИС"}
        ).get_json()["key"]
    for agency_id, other in (("school-1", "school-2"), ("school-2", "school-1")):
        c = system.app("referrals").test_client()
        c.environ_base["HTTP_AUTHORIZATION"] = f"ApiKey {keys[agency_id]}"
        assert [r["id"] for r in c.get("/referrals/changes").get_json()["items"]] == [
            ids[agency_id]
        ]
        assert c.get(f"/referrals/{ids[other]}").status_code == 404
        assert c.post(f"/referrals/{ids[other]}/comments", json={"body": "x"}).status_code == 404
