"""One list of agency kinds (shared/agencies.py): a consent recorded in the registry for
``church`` lets referrals send to a church agency end to end (real PostgreSQL and RabbitMQ); an
agreement event from a registry not yet upgraded, saying ``clergy``, is understood as ``church``;
the referrals migration renames stored consents and back; both services take every kind."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import System, family_payload, publish_event
from marshmallow import ValidationError
from sqlalchemy import select

from services.referrals import directory
from services.referrals.models import Consent
from services.referrals.schemas import AgencyIn
from services.registry.events import AgreementRecordedV1
from services.registry.schemas_cases import AgreementIn
from shared import db
from shared.agencies import AGENCY_KINDS, current_kind
from shared.events import EVENTS, load_all_event_types, parse_envelope

TODAY = dt.date.today()
DISTRICT = "Тарногский район"
PARISH = {
    "id": "parish-1",
    "name": "Приход",
    "kind": "church",
    "districts": [DISTRICT],
    "services": ["pastoral_care"],
}
CLINIC = {**PARISH, "id": "clinic-1", "name": "ЦРБ", "kind": "health"}


def client(system: System, service: str, role: str) -> Any:
    c = system.app(service).test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token(role)}"
    return c


def add_agencies(system: System) -> None:
    with system.session("referrals") as session, session.begin():
        for agency in (PARISH, CLINIC):
            directory.create_agency(session, agency, dt.datetime.now(dt.UTC))


def refer(system: System, family_id: str, number: str, agency_id: str) -> Any:
    return client(system, "referrals", "lead_specialist").post(
        "/referrals",
        json={
            "family_id": family_id,
            "family_number": number,
            "district": DISTRICT,
            "service_code": "pastoral_care",
            "agency_id": agency_id,
            "reason": "поддержка семьи",
            "contact": {"person_id": "spec-1"},
        },
    )


@pytest.mark.integration
def test_a_church_consent_recorded_in_the_registry_lets_referrals_send_to_a_church(
    system: System,
) -> None:
    registry = client(system, "registry", "lead_specialist")
    family = registry.post("/families", json=family_payload())
    assert family.status_code == 201, family.get_json()
    family_id, number = family.get_json()["id"], family.get_json()["number"]
    case = registry.get(f"/families/{family_id}/cases").get_json()[0]
    agreement = registry.post(
        f"/cases/{case['id']}/agreements",
        json={
            "signed_on": TODAY.isoformat(),
            "valid_until": (TODAY + dt.timedelta(days=365)).isoformat(),
            "consent_data_processing": True,
            "share_with": ["church"],
        },
    )
    assert agreement.status_code == 201, agreement.get_json()
    add_agencies(system)
    assert system.relay("registry") >= 1
    system.consume("referrals")

    sent = refer(system, family_id, number, "parish-1")
    assert sent.status_code == 201, sent.get_json()
    assert sent.get_json()["status"] == "requested"
    assert sent.get_json()["consent_override"] is False
    refused = refer(system, family_id, number, "clinic-1")  # health was not consented to
    assert refused.status_code == 422


@pytest.mark.integration
def test_an_agreement_event_of_an_older_registry_saying_clergy_is_read_as_church(
    system: System,
) -> None:
    add_agencies(system)
    publish_event(
        system,
        "registry.agreement.recorded",
        {
            "agreement_id": str(uuid.uuid4()),
            "case_id": str(uuid.uuid4()),
            "family_id": "fam-1",
            "signed_on": (TODAY - dt.timedelta(days=1)).isoformat(),
            "valid_until": (TODAY + dt.timedelta(days=100)).isoformat(),
            "consent_data_processing": True,
            "share_with": ["clergy", "school"],
        },
    )
    system.consume("referrals")
    with system.session("referrals") as session:
        assert session.scalars(select(Consent.share_with)).one() == ["church", "school"]
    assert refer(system, "fam-1", "Т-001", "parish-1").status_code == 201


def test_event_schemas_read_former_kinds_as_today_s_and_refuse_unknown_ones() -> None:
    load_all_event_types()
    schema = AgreementRecordedV1()
    base = {
        "agreement_id": "a",
        "case_id": "c",
        "family_id": "f",
        "signed_on": "2026-01-01",
        "valid_until": "2027-01-01",
        "consent_data_processing": True,
    }
    assert schema.load({**base, "share_with": ["clergy"]})["share_with"] == ["church"]
    with pytest.raises(ValidationError) as caught:
        schema.load({**base, "share_with": ["spaceship"]})
    assert "share_with" in caught.value.messages
    envelope = {
        "id": str(uuid.uuid4()),
        "type": "registry.agreement.recorded",
        "version": 1,
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "producer": "registry",
        "correlation_id": "c",
        "data": {**base, "share_with": ["clergy", "health"]},
    }
    assert parse_envelope(envelope, EVENTS).data["share_with"] == ["church", "health"]
    assert current_kind("clergy") == "church" and current_kind("school") == "school"


@pytest.mark.parametrize("kind", AGENCY_KINDS)
def test_both_services_take_every_kind_of_the_one_list(kind: str) -> None:
    agreement = AgreementIn().load(
        {
            "signed_on": "2026-01-01",
            "valid_until": "2027-01-01",
            "consent_data_processing": True,
            "share_with": [kind],
        }
    )
    assert agreement["share_with"] == [kind]
    assert AgencyIn().load({**PARISH, "kind": kind})["kind"] == kind


@pytest.mark.embedded
def test_the_registry_api_takes_no_former_kind(embedded_system: System) -> None:
    registry = client(embedded_system, "registry", "lead_specialist")
    family_id = registry.post("/families", json=family_payload()).get_json()["id"]
    case = registry.get(f"/families/{family_id}/cases").get_json()[0]
    refused = registry.post(
        f"/cases/{case['id']}/agreements",
        json={
            "signed_on": TODAY.isoformat(),
            "valid_until": (TODAY + dt.timedelta(days=365)).isoformat(),
            "consent_data_processing": True,
            "share_with": ["clergy"],
        },
    )
    assert refused.status_code == 422 and refused.mimetype == "application/problem+json"
    assert "share_with.0" in refused.get_json()["errors"]


# --- the referrals migration of stored consents --------------------------------------------------


CONSENTS = sa.table(
    "consents",
    sa.column("agreement_id", sa.String),
    sa.column("family_id", sa.String),
    sa.column("case_id", sa.String),
    sa.column("signed_on", sa.Date),
    sa.column("valid_until", sa.Date),
    sa.column("data_processing", sa.Boolean),
    sa.column("share_with", sa.JSON),
    sa.column("recorded_at", db.UTCDateTime),
)


def test_the_referrals_migration_names_stored_consents_church_and_back(
    empty_database: str,
) -> None:
    url = empty_database
    db.upgrade("referrals", url, "0004")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            CONSENTS.insert(),
            [
                {
                    "agreement_id": agreement_id,
                    "family_id": "f1",
                    "case_id": "c1",
                    "signed_on": TODAY,
                    "valid_until": TODAY + dt.timedelta(days=365),
                    "data_processing": True,
                    "share_with": kinds,
                    "recorded_at": dt.datetime.now(dt.UTC),
                }
                for agreement_id, kinds in (("a1", ["clergy", "school"]), ("a2", ["health"]))
            ],
        )

    def stored() -> dict[str, list[str]]:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(CONSENTS.c.agreement_id, CONSENTS.c.share_with)).all()
        return dict(rows)  # type: ignore[arg-type]

    db.upgrade("referrals", url, "0005_consent_kinds")
    assert stored() == {"a1": ["church", "school"], "a2": ["health"]}
    from alembic import command

    command.downgrade(db.alembic_config("referrals", url), "0004")
    assert stored() == {"a1": ["clergy", "school"], "a2": ["health"]}
    engine.dispose()
