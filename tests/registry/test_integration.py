"""The registry on the real PostgreSQL and RabbitMQ: events through the outbox and the broker in
both directions, the trigram surname search and duplicate detection."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pika
import pytest
from conftest import System, family_payload
from sqlalchemy import func, select, text

from services.registry import domain_plan
from services.registry.models import ContactEntry, Measure
from shared.db import utcnow

pytestmark = pytest.mark.integration

TODAY = dt.datetime.now(dt.UTC).date()


def register(system: System, payload: dict[str, Any]) -> dict[str, Any]:
    response = system.client("registry", "lead_specialist").post("/families", json=payload)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def latin(surname: str = "Ivanova") -> dict[str, Any]:
    payload = family_payload(surname)
    payload["members"][0]["full_name"] = f"{surname} Mariya Petrovna"
    payload["members"][1]["full_name"] = f"{surname} Anna Ivanovna"
    return payload


class Tap:
    """A queue of the test's own bound to the events exchange, to see what really left."""

    def __init__(self, system: System, pattern: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(system.broker_url))
        self.channel = self.connection.channel()
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, f"{system.prefix}.events", routing_key=pattern)

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while True:
            method, _props, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return out
            out.append(json.loads(body))

    def close(self) -> None:
        self.connection.close()


def test_closed_loop_measure_out_through_the_broker_and_visit_back_in(system: System) -> None:
    tap = Tap(system, "registry.#")
    try:
        family = register(system, family_payload("Кузнецова"))
        lead = system.client("registry", "lead_specialist")
        case = lead.get(f"/families/{family['id']}/cases").get_json()[0]
        measure = lead.post(
            f"/cases/{case['id']}/measures",
            json={
                "title": "Медосмотр детей",
                "kind": "medical_examination",
                "agency_id": "polyclinic-1",
                "deadline": (TODAY + dt.timedelta(days=14)).isoformat(),
            },
        ).get_json()
        assert system.relay("registry") == 3  # family.registered, case.opened, measure.assigned
        received = {e["type"]: e for e in tap.drain()}
        assert received["registry.case.opened"]["data"]["case_id"] == case["id"]
        assigned = received["registry.measure.assigned"]
        assert assigned["data"]["measure_id"] == measure["id"]
        assert assigned["data"]["agency_id"] == "polyclinic-1"
        assert "Кузнецова" not in json.dumps(assigned)  # the family travels by number and id

        # The referrals side's answer, applied directly (tests/integration/test_closed_loop.py
        # drives it through the referrals service).
        with system.session("registry") as session, session.begin():
            domain_plan.apply_referral_status(
                session, measure["id"], "completed", "осмотрены", utcnow()
            )
        assert system.relay("registry") == 1
        [updated] = tap.drain()
        assert updated["type"] == "registry.measure.updated" and updated["data"]["status"] == "done"
    finally:
        tap.close()

    from services.raids import events as raids_events

    visit = {
        "visit_id": str(uuid.uuid4()),
        "raid_id": "raid-1",
        "family_id": family["id"],
        "visited_on": TODAY.isoformat(),
        "outcome": "visited",
        "urgent_concern": False,
        "participants": ["pdn-7", "spec-1"],
        "agencies": ["pdn-1", "centre-1"],
        "summary": "условия удовлетворительные",
        "recorded_by": "pdn-7",
    }
    with system.session("raids") as session, session.begin():
        envelope = raids_events.publish(session, "raids.visit.recorded", visit)
    assert system.relay("raids") >= 1
    system.consume("registry")
    with system.session("registry") as session:
        [entry] = session.scalars(select(ContactEntry)).all()
        assert entry.case_id == case["id"] and entry.kind == "raid_visit"
        assert entry.staff == ["pdn-7", "spec-1"] and entry.occurred_on == TODAY
        handled = session.scalar(
            text("SELECT count(*) FROM inbox WHERE message_id = :id"), {"id": envelope["id"]}
        )
        assert handled == 1
        assert session.get(Measure, measure["id"]).status == "done"  # type: ignore[union-attr]


def test_surname_search_uses_the_trigram_index(system: System) -> None:
    for surname in ("Иванова", "Ivanovskaya", "Петрова", "Сидорова"):
        register(system, family_payload(surname))
    c = system.client("registry", "coordinator")
    for typed in ("Иванов", "ivanov"):  # either script finds both spellings
        found = c.get(f"/families?surname={typed}&sort=display_name").get_json()
        assert [f["display_name"] for f in found["items"]] == ["Ivanovskaya", "Иванова"]
    with system.session("registry") as session:
        session.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            session.execute(
                text("EXPLAIN SELECT id FROM families WHERE search_names LIKE '% ivanov%'")
            ).scalars()
        )
        ext = session.scalar(text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"))
    assert ext == 1
    assert "ix_families_search_names_trgm" in plan


def test_duplicates_across_scripts_on_postgresql(system: System) -> None:
    first = register(system, family_payload("Васильева"))
    other = family_payload("Смирнова", district="Вожегодский район")
    other["members"][0].update(full_name="Смирнова Ольга Игоревна", birth_date="1985-01-09")
    other["members"][1].update(full_name="Смирнов Павел Ильич", birth_date="2012-07-30")
    register(system, other)
    second = register(system, latin("Vasilyeva"))
    [candidate] = second["duplicate_candidates"]
    assert candidate["family_id"] == first["id"] and candidate["score"] >= 0.75
    assert {"members.full_name", "children.birth_date"} <= set(candidate["matched_fields"])


def test_accepted_signals_without_a_family_id_through_the_broker(system: System) -> None:
    """A school's signal accepted without a registry family id: nothing matches, so the family is
    registered and its case opened; a signal naming only a shared surname waits as an intake
    (``registry.intake.pending`` goes out, without names); redelivery changes nothing."""
    from conftest import publish_event

    from services.registry.models import Case, Family, Intake

    register(system, family_payload("Соколова"))
    register(
        system,
        family_payload("Соколова", district="Тарногский район")
        | {
            "members": [
                {
                    "role": "mother",
                    "full_name": "Соколова Елена Викторовна",
                    "birth_date": "1980-01-01",
                },
                {
                    "role": "child",
                    "full_name": "Соколов Кирилл Олегович",
                    "birth_date": "2011-01-01",
                },
            ]
        },
    )
    system.relay("registry")
    tap = Tap(system, "registry.#")

    def accepted(signal_id: str, family: dict[str, Any]) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC).isoformat()
        return {
            "signal_id": signal_id,
            "district": "Тарногский район",
            "priority": "amber",
            "reporter_agency_id": "school-1",
            "triage_due_at": now,
            "family_id": None,
            "family": family,
            "observed_at": now,
            "accepted_by": "coord-1",
            "at": now,
        }

    new_family = accepted(
        "sig-new",
        {
            "surname": "Морозова",
            "address": "ул. Школьная, д. 4, кв. 2",
            "settlement": "с. Тарногский Городок",
            "children": [{"name": "Анна", "birth_date": "2016-09-10", "school": "СОШ №1"}],
        },
    )
    try:
        event_id = str(uuid.uuid4())
        publish_event(system, "referrals.signal.accepted", new_family, event_id=event_id)
        publish_event(system, "referrals.signal.accepted", new_family, event_id=event_id)
        publish_event(system, "referrals.signal.accepted", new_family)  # sent twice by referrals
        publish_event(
            system, "referrals.signal.accepted", accepted("sig-namesake", {"surname": "Соколова"})
        )
        system.consume("registry")
        with system.session("registry") as session:
            intakes = {i.signal_id: i for i in session.scalars(select(Intake))}
            assert set(intakes) == {"sig-new", "sig-namesake"}
            registered = session.get(Family, intakes["sig-new"].family_id)
            assert registered is not None and registered.display_name == "Морозова"
            assert (registered.house, registered.flat) == ("4", "2")
            assert registered.region == "Вологодская область"  # from the district's families
            assert registered.missing_fields == ["members.adult", "contacts"]
            cases = session.scalars(select(Case).where(Case.family_id == registered.id)).all()
            assert [(c.stage, c.source) for c in cases] == [("preparatory", "signal:sig-new")]
            assert session.scalar(select(func.count()).select_from(Family)) == 3
            namesake = intakes["sig-namesake"]
            assert namesake.state == "pending" and len(namesake.candidates) == 2
        assert system.relay("registry") == 3
        out = tap.drain()
        assert sorted(e["type"] for e in out) == [
            "registry.case.opened",
            "registry.family.registered",
            "registry.intake.pending",
        ]
        [pending] = [e for e in out if e["type"] == "registry.intake.pending"]
        assert pending["data"]["candidates"] == 2 and pending["data"]["signal_id"] == "sig-namesake"
        assert "Соколова" not in json.dumps(pending) and "Морозова" not in json.dumps(out)
        from shared.messaging.dlq import list_dead_letters

        worker = system.worker("registry")
        with worker.connect() as conn:
            assert list_dead_letters(conn, worker.names, "registry") == []
    finally:
        tap.close()
