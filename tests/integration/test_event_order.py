"""The same end state whatever order events arrive in, and with duplicates, on the real broker.

Message order is not guaranteed across the bus (two producers' relays, retries, redeliveries).
Each row of PAIRS names two events that one consumer combines into one state; the test
publishes them to RabbitMQ in the order they were produced and reversed, each handled before
the next is published (the second really is handled after the first), then both again with
their ids (a redelivery), and checks the consumer's state against the one expected, with no
dead letter. How each consumer keeps it so is said in ``why``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import System, family_payload, publish_event
from sqlalchemy import select

from services.referrals import directory, intake
from services.referrals.models import KnownFamily as ReferralsFamily
from services.referrals.models import Referral
from shared.messaging.dlq import list_dead_letters

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
TODAY = NOW.date()
DISTRICT = "Тарногский район"


@dataclass(frozen=True)
class Message:
    routing_key: str
    data: dict[str, Any]
    occurred_at: dt.datetime


@dataclass(frozen=True)
class Pair:
    consumer: str
    why: str
    setup: Callable[[System], dict[str, Any]]  # the consumer's state before the pair
    pair: Callable[[dict[str, Any]], tuple[Message, Message]]  # in the order produced
    state: Callable[[System, dict[str, Any]], object]  # what the consumer made of them
    expected: object
    settle: float = 0.5  # seconds without a message before the end (a retry comes 1 s later; margin for a loaded CI machine)


# --- the events, as their producers publish them --------------------------------------------


def family(family_id: str, version: int, number: str, settlement: str) -> dict[str, Any]:
    return {
        "family_id": family_id,
        "number": number,
        "category": "risk_group",
        "address": {
            "region": "Вологодская область",
            "district": DISTRICT,
            "settlement": settlement,
        },
        "display_name": "Семья",
        "children_count": 2,
        "family_version": version,
    }


def agreement(agreement_id: str, kinds: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "agreement_id": agreement_id,
        "case_id": "case-1",
        "family_id": "fam-1",
        "signed_on": TODAY.isoformat(),
        "valid_until": (TODAY + dt.timedelta(days=365)).isoformat(),
        "consent_data_processing": True,
        "share_with": kinds,
        **extra,
    }


MEASURE = {
    "measure_id": "m-1",
    "case_id": "case-1",
    "family_id": "fam-1",
    "number": "35-0001",
    "district": DISTRICT,
    "agency_id": "pdn-1",
    "kind": "pdn_check",
    "title": "Проверка условий инспектором",
    "deadline": (TODAY + dt.timedelta(days=30)).isoformat(),
    "status": "planned",
    "measure_version": 1,
}


def referral_step(
    measure_id: str | None, previous: str | None, status: str, version: int, by: str = "system"
) -> dict:
    return {
        "referral_id": "ref-1",
        "measure_id": measure_id,
        "family_id": "fam-1",
        "agency_id": "pdn-1",
        "service_code": "pdn_check",
        "urgency": "routine",
        "status": status,
        "previous_status": previous,
        "reason": None,
        "outcome": None,
        "at": NOW.isoformat(),
        "by": by,
        "referral_version": version,
        "number": "R-2026-000001",
    }


def case_event(lead: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "case_id": "case-1",
        "family_id": "fam-1",
        "number": "35-0001",
        "district": DISTRICT,
        "lead_specialist": lead,
        **extra,
    }


def at(seconds: int) -> dt.datetime:
    return NOW - dt.timedelta(minutes=1) + dt.timedelta(seconds=seconds)


# --- the consumers' state before and after --------------------------------------------------


def police_agency(system: System) -> dict[str, Any]:
    with system.session("referrals") as session, session.begin():
        directory.create_agency(
            session,
            {"id": "pdn-1", "name": "ПДН", "kind": "police_pdn", "districts": [DISTRICT]},
            NOW,
        )
    return {}


def police_referral_sent(system: System) -> dict[str, Any]:
    """A referral sent to the police under an agreement that a second one then replaces."""
    police_agency(system)
    with system.session("referrals") as session, session.begin():
        loaded = {  # as the consumer hands them over: dates, not strings
            **agreement("agr-1", ["police_pdn"]),
            "signed_on": TODAY - dt.timedelta(days=30),
            "valid_until": TODAY + dt.timedelta(days=365),
        }
        directory.remember_agreement(session, loaded)
        session.flush()
        measure = {**MEASURE, "deadline": TODAY + dt.timedelta(days=30)}
        referral = intake.referral_from_measure(session, measure, NOW)
        assert referral is not None and referral.status == "requested"
    return {}


def clinic_with_route(system: System) -> dict[str, Any]:
    with system.session("referrals") as session, session.begin():
        directory.create_agency(
            session,
            {
                "id": "clinic-1",
                "name": "Поликлиника",
                "kind": "health",
                "districts": [DISTRICT],
                "services": ["medical_examination"],
            },
            NOW,
        )
        directory.add_rule(
            session,
            {"service_code": "medical_examination", "district": DISTRICT, "agency_id": "clinic-1"},
            "coordinator-1",
            NOW,
        )
    return {}


def nothing(system: System) -> dict[str, Any]:
    return {}


def a_planned_measure(system: System) -> dict[str, Any]:
    """A family, its case and a plan measure for the police, in the registry."""
    lead = system.client("registry", "lead_specialist")
    created = lead.post("/families", json=family_payload("Лебедева")).get_json()
    case = lead.get(f"/families/{created['id']}/cases").get_json()[0]
    measure = lead.post(
        f"/cases/{case['id']}/measures",
        json={
            "title": "Медосмотр",
            "kind": "medical_examination",
            "agency_id": "pdn-1",
            "deadline": (TODAY + dt.timedelta(days=14)).isoformat(),
        },
    )
    assert measure.status_code == 201, measure.get_json()
    return {"measure_id": measure.get_json()["id"]}


def a_case_with_its_lead(system: System) -> dict[str, Any]:
    """Notifications knows the case (and its lead, who has an email) but not yet the measure."""
    from services.notifications.models import KnownCase, Recipient

    with system.session("notifications") as session, session.begin():
        session.add(
            KnownCase(
                case_id="case-1",
                family_id="fam-1",
                family_number="35-0001",
                district=DISTRICT,
                lead_person_id="spec-1",
                stage="support",
                updated_at=NOW,
            )
        )
        session.add(
            Recipient(
                person_id="spec-1",
                roles=["lead_specialist"],
                districts=[DISTRICT],
                email="spec-1@centre.test",
            )
        )
    return {}


def told_of_the_answer(system: System, ctx: dict[str, Any]) -> object:
    from services.notifications.models import Message

    with system.session("notifications") as session:
        return sorted(
            session.scalars(
                select(Message.recipient_id).where(
                    Message.source_event_type == "referrals.referral.status_changed"
                )
            )
        )


def the_referral(system: System, ctx: dict[str, Any]) -> object:
    with system.session("referrals") as session:
        rows = session.scalars(select(Referral)).all()
        return [(r.status, r.agency_id, r.family_number, r.status_reason) for r in rows]


def referrals_family(system: System, ctx: dict[str, Any]) -> object:
    with system.session("referrals") as session:
        known = session.get(ReferralsFamily, "fam-1")
        return known and (known.number, known.family_version)


def raids_family(system: System, ctx: dict[str, Any]) -> object:
    from services.raids.models import KnownFamily

    with system.session("raids") as session:
        known = session.get(KnownFamily, "fam-1")
        return known and (known.number, known.settlement)


def registry_measure(system: System, ctx: dict[str, Any]) -> object:
    from services.registry.models import Measure

    with system.session("registry") as session:
        measure = session.get(Measure, ctx["measure_id"])
        assert measure is not None
        return measure.status, measure.referral_id


def notifications_case(system: System, ctx: dict[str, Any]) -> object:
    from services.notifications.models import KnownCase

    with system.session("notifications") as session:
        case = session.get(KnownCase, "case-1")
        return case and (case.stage, case.lead_person_id)


def notifications_measure(system: System, ctx: dict[str, Any]) -> object:
    from services.notifications.models import KnownMeasure

    with system.session("notifications") as session:
        measure = session.get(KnownMeasure, "m-1")
        return measure and (measure.status, measure.measure_version)


def notifications_referral(system: System, ctx: dict[str, Any]) -> object:
    from services.notifications.models import KnownReferral

    with system.session("notifications") as session:
        referral = session.get(KnownReferral, "ref-1")
        return referral and referral.status


FOLLOWUP = {
    "followup_id": "fu-1",
    "raid_id": "raid-1",
    "visit_id": "visit-1",
    "family_id": "fam-1",
    "service_code": "medical_examination",
    "agency_id": None,
    "reason": "ребёнок кашляет, нужен осмотр",
    "urgency": "priority",
    "requested_by": "inspector-1",
    "requested_at": NOW.isoformat(),
}

PAIRS: dict[str, Pair] = {
    "referrals: agreement x measure": Pair(
        "referrals",
        "a measure first waits as a draft 'not consented'; the agreement sends it (consent.py)",
        police_agency,
        lambda ctx: (
            Message("registry.agreement.recorded", agreement("agr-1", ["police_pdn"]), at(0)),
            Message("registry.measure.assigned", MEASURE, at(1)),
        ),
        the_referral,
        [("requested", "pdn-1", "35-0001", None)],
    ),
    "referrals: agreement recorded x withdrawn": Pair(
        "referrals",
        "a withdrawal carries the whole agreement and stays whichever comes first; the "
        "unanswered referral is cancelled with the reason",
        police_referral_sent,
        lambda ctx: (
            Message("registry.agreement.recorded", agreement("agr-2", ["police_pdn"]), at(0)),
            Message(
                "registry.agreement.withdrawn",
                agreement(
                    "agr-2", ["police_pdn"], withdrawn_at=at(1).isoformat(), reason="отозвано"
                ),
                at(1),
            ),
        ),
        the_referral,
        [
            (
                "cancelled",
                "pdn-1",
                "35-0001",
                f"the family withdrew its agreement on {at(1).date().isoformat()}",
            )
        ],
    ),
    "referrals: family registered x raid follow-up": Pair(
        "referrals",
        "a follow-up for a family not yet known is retried through the back-off queue",
        clinic_with_route,
        lambda ctx: (
            Message("registry.family.registered", family("fam-1", 1, "35-0001", "с. А"), at(0)),
            Message("raids.followup.requested", FOLLOWUP, at(1)),
        ),
        the_referral,
        [
            (
                "draft",
                "clinic-1",
                "35-0001",
                "the family has not consented to sharing data with agencies of kind health",
            )
        ],
        settle=8.0,
    ),
    "referrals: family registered x updated": Pair(
        "referrals",
        "family_version: an older snapshot never replaces a newer one",
        nothing,
        lambda ctx: (
            Message("registry.family.registered", family("fam-1", 1, "35-0001", "с. А"), at(0)),
            Message("registry.family.updated", family("fam-1", 2, "35-0002", "с. Б"), at(1)),
        ),
        referrals_family,
        ("35-0002", 2),
    ),
    "raids: family registered x updated": Pair(
        "raids",
        "family_version, as in referrals",
        nothing,
        lambda ctx: (
            Message("registry.family.registered", family("fam-1", 1, "35-0001", "с. А"), at(0)),
            Message("registry.family.updated", family("fam-1", 2, "35-0002", "с. Б"), at(1)),
        ),
        raids_family,
        ("35-0002", "с. Б"),
    ),
    "registry: referral requested x accepted": Pair(
        "registry",
        "a measure moves only forward (rank of its statuses): a late 'requested' changes nothing",
        a_planned_measure,
        lambda ctx: (
            Message(
                "referrals.referral.status_changed",
                referral_step(ctx["measure_id"], None, "requested", 1),
                at(0),
            ),
            Message(
                "referrals.referral.status_changed",
                referral_step(ctx["measure_id"], "received", "accepted", 3),
                at(1),
            ),
        ),
        registry_measure,
        ("in_progress", "ref-1"),
    ),
    "notifications: case opened x lead assigned": Pair(
        "notifications",
        "each case event carries the lead as of its moment: the newest wins",
        nothing,
        lambda ctx: (
            Message(
                "registry.case.opened",
                case_event(
                    None,
                    opened_on=TODAY.isoformat(),
                    reentry=False,
                    source="signal:s-1",
                    category="risk_group",
                ),
                at(0),
            ),
            Message(
                "registry.case.lead_assigned",
                case_event("spec-1", previous_lead_specialist=None, assigned_by="coord-1"),
                at(1),
            ),
        ),
        notifications_case,
        ("preparatory", "spec-1"),
    ),
    "notifications: stage changed x changed again": Pair(
        "notifications",
        "the stage event's own moment decides (a case may move back, final -> support)",
        nothing,
        lambda ctx: (
            Message(
                "registry.case.stage_changed",
                case_event(
                    "spec-1",
                    stage_from="support",
                    stage_to="final",
                    changed_on=TODAY.isoformat(),
                ),
                at(0),
            ),
            Message(
                "registry.case.stage_changed",
                case_event(
                    "spec-1",
                    stage_from="final",
                    stage_to="support",
                    changed_on=TODAY.isoformat(),
                ),
                at(1),
            ),
        ),
        notifications_case,
        ("support", "spec-1"),
    ),
    "notifications: measure assigned x updated": Pair(
        "notifications",
        "measure_version",
        nothing,
        lambda ctx: (
            Message("registry.measure.assigned", MEASURE, at(0)),
            Message(
                "registry.measure.updated",
                {**MEASURE, "status": "referred", "measure_version": 2},
                at(1),
            ),
        ),
        notifications_measure,
        ("referred", 2),
    ),
    "notifications: referral requested x accepted": Pair(
        "notifications",
        "referral_version",
        nothing,
        lambda ctx: (
            Message(
                "referrals.referral.status_changed",
                referral_step(None, None, "requested", 1),
                at(0),
            ),
            Message(
                "referrals.referral.status_changed",
                referral_step(None, "received", "accepted", 3),
                at(1),
            ),
        ),
        notifications_referral,
        "accepted",
    ),
    "notifications: measure assigned x referral answered": Pair(
        "notifications",
        "the lead is found through the measure: news of its referral that overtakes the measure "
        "waits for it (retried) for a few minutes rather than leave the lead out",
        a_case_with_its_lead,
        lambda ctx: (
            Message("registry.measure.assigned", MEASURE, at(0)),
            Message(
                "referrals.referral.status_changed",
                {  # news of now: a referral's news waits for its measure only while recent
                    **referral_step("m-1", "received", "accepted", 3, by="inspector-1"),
                    "at": dt.datetime.now(dt.UTC).isoformat(),
                },
                at(1),
            ),
        ),
        told_of_the_answer,
        ["spec-1"],
        settle=8.0,
    ),
}


@pytest.mark.parametrize("order", ["as produced", "reversed"])
@pytest.mark.parametrize("name", list(PAIRS))
def test_the_same_end_state_in_either_order_and_with_duplicates(
    system: System, name: str, order: str
) -> None:
    pair = PAIRS[name]
    ctx = pair.setup(system)
    first, second = pair.pair(ctx)
    ids = {id(first): str(uuid.uuid4()), id(second): str(uuid.uuid4())}
    arrival = [first, second] if order == "as produced" else [second, first]
    for message in [*arrival, *arrival]:  # then both again, with their ids: a redelivery
        publish_event(
            system,
            message.routing_key,
            message.data,
            event_id=ids[id(message)],
            occurred_at=message.occurred_at,
        )
        system.consume(pair.consumer, idle=0.3)
    system.consume(pair.consumer, idle=pair.settle)
    assert pair.state(system, ctx) == pair.expected, pair.why
    worker = system.worker(pair.consumer)
    with worker.connect() as conn:
        assert list_dead_letters(conn, worker.names, pair.consumer) == []
