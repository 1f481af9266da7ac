"""The closed loop across services on the real broker: a plan measure assigned to an agency
becomes a referral there, and the agency's answers move the measure back in the registry."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import System, add_coordinator, family_payload
from sqlalchemy import select

from services.referrals import directory
from services.referrals.models import Referral
from services.registry.models import Measure

pytestmark = pytest.mark.integration

TODAY = dt.datetime.now(dt.UTC).date()


def round_trip(system: System, producer: str, consumer: str) -> None:
    system.relay(producer)
    system.consume(consumer)


def measure_status(system: System, measure_id: str) -> tuple[str, str | None]:
    with system.session("registry") as session:
        measure = session.get(Measure, measure_id)
        assert measure is not None
        return measure.status, measure.result_note


def test_measure_to_referral_and_back(system: System) -> None:
    with system.session("referrals") as session, session.begin():
        directory.create_agency(
            session,
            {
                "id": "polyclinic-1",
                "name": "Районная поликлиника",
                "kind": "health",
                "districts": ["Тарногский район"],
                "services": ["medical_examination"],
            },
            dt.datetime.now(dt.UTC),
        )
    lead = system.client("registry", "lead_specialist")
    family = lead.post("/families", json=family_payload("Лебедева")).get_json()
    case = lead.get(f"/families/{family['id']}/cases").get_json()[0]
    agreement = lead.post(
        f"/cases/{case['id']}/agreements",
        json={
            "signed_on": (TODAY - dt.timedelta(days=1)).isoformat(),
            "valid_until": (TODAY + dt.timedelta(days=365)).isoformat(),
            "consent_data_processing": True,
            "share_with": ["health"],
        },
    )
    assert agreement.status_code == 201, agreement.get_json()
    measure = lead.post(
        f"/cases/{case['id']}/measures",
        json={
            "title": "Медосмотр детей",
            "kind": "medical_examination",
            "agency_id": "polyclinic-1",
            "deadline": (TODAY + dt.timedelta(days=14)).isoformat(),
        },
    )
    assert measure.status_code == 201, measure.get_json()
    measure_id = measure.get_json()["id"]

    round_trip(system, "registry", "referrals")  # agreement + measure.assigned -> a referral
    with system.session("referrals") as session:
        [referral] = session.scalars(select(Referral)).all()
    assert referral.measure_id == measure_id and referral.status == "requested"
    assert referral.agency_id == "polyclinic-1"

    round_trip(system, "referrals", "registry")
    assert measure_status(system, measure_id)[0] == "referred"

    agency = system.app("referrals").test_client()
    agency.environ_base["HTTP_AUTHORIZATION"] = "Bearer " + system.token(
        "agency_staff", agency="polyclinic-1", subject="doctor-1"
    )
    for step in (
        {"status": "received"},
        {"status": "accepted"},
        {"status": "in-progress"},
    ):
        response = agency.post(f"/referrals/{referral.id}/transitions", json=step)
        assert response.status_code == 200, response.get_json()
    round_trip(system, "referrals", "registry")
    assert measure_status(system, measure_id)[0] == "in_progress"

    response = agency.post(
        f"/referrals/{referral.id}/transitions",
        json={"status": "completed", "outcome": "дети осмотрены, здоровы"},
    )
    assert response.status_code == 200, response.get_json()
    round_trip(system, "referrals", "registry")
    assert measure_status(system, measure_id) == ("done", "дети осмотрены, здоровы")


def test_an_accepted_signal_reaches_the_familys_case(system: System) -> None:
    """Early detection: a school's signal, accepted for a known family, is logged on its case;
    one accepted without a family id, naming only a surname, is held for the coordinator as a
    pending intake with the candidate (plausible, not confident enough to attach)."""
    from services.registry.models import ContactEntry

    with system.session("referrals") as session, session.begin():
        directory.create_agency(
            session,
            {
                "id": "school-1",
                "name": "Школа",
                "kind": "school",
                "districts": ["Тарногский район"],
            },
            dt.datetime.now(dt.UTC),
        )
    family = (
        system.client("registry", "lead_specialist")
        .post("/families", json=family_payload("Морозова"))
        .get_json()
    )
    teacher = system.app("referrals").test_client()
    teacher.environ_base["HTTP_AUTHORIZATION"] = "Bearer " + system.token(
        "agency_staff", agency="school-1", subject="teacher-1"
    )
    coordinator = system.client("referrals", "coordinator")
    signals = []
    for _ in range(2):
        reported = teacher.post(
            "/signals",
            json={
                "district": "Тарногский район",
                "observed": "пропуски занятий, признаки безнадзорности",
                "priority": "amber",
                "observed_at": dt.datetime.now(dt.UTC).isoformat(),
                "family": {"surname": "Морозова"},
            },
        )
        assert reported.status_code == 201, reported.get_json()
        signals.append(reported.get_json()["id"])
    round_trip(system, "registry", "referrals")  # referrals learns the family's id
    matched = coordinator.post(f"/signals/{signals[0]}/accept", json={"family_id": family["id"]})
    assert matched.status_code == 200, matched.get_json()
    assert coordinator.post(f"/signals/{signals[1]}/accept", json={}).status_code == 200

    system.relay("registry")
    round_trip(system, "referrals", "registry")
    with system.session("registry") as session:
        entries = session.scalars(
            select(ContactEntry).where(ContactEntry.source_id == f"signal:{signals[0]}")
        ).all()
    assert len(entries) == 1 and entries[0].kind == "signal"
    from services.registry.models import Intake

    with system.session("registry") as session:
        [pending] = session.scalars(select(Intake)).all()
    assert pending.signal_id == signals[1] and pending.state == "pending"
    assert [c["family_id"] for c in pending.candidates] == [family["id"]]


def test_a_raid_followup_becomes_a_referral_once(system: System) -> None:
    """A visit asks the clinic to act: the follow-up becomes one referral, even when it arrives
    before referrals has heard of the family (it waits in the back-off queue, not lost)."""
    import uuid

    from services.raids import events as raids_events

    with system.session("referrals") as session, session.begin():
        directory.create_agency(
            session,
            {
                "id": "clinic-1",
                "name": "Детская поликлиника",
                "kind": "health",
                "districts": ["Тарногский район"],
                "services": ["medical_examination"],
            },
            dt.datetime.now(dt.UTC),
        )
        directory.add_rule(
            session,
            {
                "service_code": "medical_examination",
                "district": "Тарногский район",
                "agency_id": "clinic-1",
            },
            "coordinator-1",
            dt.datetime.now(dt.UTC),
        )
    family = (
        system.client("registry", "lead_specialist")
        .post("/families", json=family_payload("Соколова"))
        .get_json()
    )
    followup = {
        "followup_id": str(uuid.uuid4()),
        "raid_id": "raid-1",
        "visit_id": "visit-1",
        "family_id": family["id"],
        "service_code": "medical_examination",
        "agency_id": None,
        "reason": "ребёнок кашляет, нужен осмотр",
        "urgency": "priority",
        "requested_by": "inspector-1",
        "requested_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    with system.session("raids") as session, session.begin():
        raids_events.publish(session, "raids.followup.requested", followup)
    round_trip(system, "raids", "referrals")  # the family is not known yet
    with system.session("referrals") as session:
        assert session.scalars(select(Referral)).all() == []

    round_trip(system, "registry", "referrals")  # now it is
    with system.session("raids") as session, session.begin():
        raids_events.publish(session, "raids.followup.requested", followup)  # sent twice
    round_trip(system, "raids", "referrals")
    with system.session("referrals") as session:
        [referral] = session.scalars(select(Referral)).all()
    assert referral.followup_id == followup["followup_id"]
    assert referral.family_number == family["number"] and referral.district == "Тарногский район"
    assert referral.agency_id == "clinic-1"  # by the district's routing rule
    assert referral.urgency == "urgent"
    # no agreement recorded: it waits as a draft that says why, for a coordinator
    assert referral.status == "draft" and "consent" in (referral.status_reason or "")


def test_a_signal_the_registry_refuses_returns_to_triage_with_the_reason(system: System) -> None:
    """The coordinator accepted a signal for a family referrals knew, but the registry no longer
    holds it (merged away since): the registry answers with registry.signal.refused, not a dead
    letter, and the signal is back in triage with the reason for the coordinator."""
    from services.notifications.models import Message
    from services.referrals.models import KnownFamily
    from shared.messaging.dlq import list_dead_letters

    add_coordinator(system)

    with system.session("referrals") as session, session.begin():
        session.add(
            KnownFamily(
                family_id="fam-gone",
                number="35-0404",
                district="Тарногский район",
                family_version=2,
            )
        )
    coordinator = system.client("referrals", "coordinator")
    reported = coordinator.post(
        "/signals",
        json={
            "district": "Тарногский район",
            "observed": "дети одни дома",
            "priority": "green",
            "observed_at": dt.datetime.now(dt.UTC).isoformat(),
            "family": {"number": "35-0404"},
        },
    ).get_json()
    accepted = coordinator.post(f"/signals/{reported['id']}/accept", json={"family_id": "fam-gone"})
    assert accepted.status_code == 200 and accepted.get_json()["status"] == "accepted"

    round_trip(system, "referrals", "registry")
    round_trip(system, "registry", "referrals")
    signal = coordinator.get(f"/signals/{reported['id']}").get_json()
    assert signal["status"] == "new" and signal["refusal_reason"] == "family-unknown"
    assert signal["refusal_detail"] == "no family fam-gone" and signal["decided_by"] is None
    worker = system.worker("registry")
    with worker.connect() as conn:
        assert list_dead_letters(conn, worker.names, "registry") == []
    round_trip(system, "referrals", "notifications")  # the district's coordinator is told
    with system.session("notifications") as session:
        subjects = session.scalars(
            select(Message.subject).where(
                Message.recipient_id == "coord-1",
                Message.source_event_type == "referrals.signal.returned",
            )
        ).all()
    assert subjects == [f"Сигнал {reported['id'][:8]} возвращён на разбор"], subjects
    dismissed = coordinator.post(f"/signals/{reported['id']}/dismiss", json={"reason": "дубль"})
    assert dismissed.status_code == 200
