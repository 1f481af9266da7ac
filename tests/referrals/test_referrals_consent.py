"""Referrals follow the family's consent whenever it arrives or ends (consent.py), and a signal
the registry refuses returns to triage (signals.py): rules on SQLite with a test clock. The same
over the real broker, in both orders of the events: tests/integration/test_event_order.py."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from services.referrals import consent, directory, domain, intake, signals
from services.referrals.domain import Actor
from services.referrals.models import Base, KnownFamily, Referral, tables
from shared.errors import RuleViolation

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
COORD = Actor("coord-1", None, True, False, may_override_consent=True, cross_agency=True)
POLICE = Actor("inspector-1", "pdn-1", False, True, False)
MEASURE = {
    "measure_id": "m-1",
    "case_id": "case-1",
    "family_id": "fam-1",
    "number": "Т-001",
    "district": "Тарнога",
    "agency_id": "pdn-1",
    "kind": "pdn_check",
    "title": "Проверка условий",
    "deadline": TODAY + dt.timedelta(days=30),
    "status": "planned",
    "measure_version": 1,
}


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        for agency_id, kind in (("pdn-1", "police_pdn"), ("school-1", "school")):
            directory.create_agency(
                s,
                {"id": agency_id, "name": agency_id, "kind": kind, "districts": ["Тарнога"]},
                NOW,
            )
        yield s
    engine.dispose()


def agreement(
    session: Session,
    agreement_id: str,
    kinds: list[str],
    *,
    signed: dt.date = TODAY - dt.timedelta(days=1),
    until: dt.date = TODAY + dt.timedelta(days=365),
    withdrawn: dt.datetime | None = None,
    now: dt.datetime = NOW,
) -> tuple[int, int]:
    """What the consumer does with an agreement event: the read model, then the referrals."""
    directory.remember_agreement(
        session,
        {
            "agreement_id": agreement_id,
            "case_id": "case-1",
            "family_id": "fam-1",
            "signed_on": signed,
            "valid_until": until,
            "consent_data_processing": True,
            "share_with": kinds,
            "withdrawn_at": withdrawn,
        },
    )
    session.flush()
    return consent.follow_consent(session, "fam-1", now)


def measure(session: Session, measure_id: str = "m-1", agency_id: str = "pdn-1") -> Referral:
    referral = intake.referral_from_measure(
        session, {**MEASURE, "measure_id": measure_id, "agency_id": agency_id}, NOW
    )
    assert referral is not None
    session.flush()
    return referral


def steps(session: Session, referral: Referral) -> list[tuple[str | None, str]]:
    rows = session.execute(
        select(tables.outbox.c.body).where(
            tables.outbox.c.event_type == "referrals.referral.status_changed"
        )
    ).scalars()
    data = [json.loads(r)["data"] for r in rows]
    return [(d["previous_status"], d["status"]) for d in data if d["referral_id"] == referral.id]


def test_a_draft_waiting_for_consent_is_sent_when_the_agreement_arrives(session: Session) -> None:
    waiting = measure(session)
    assert waiting.status == "draft" and "consented" in (waiting.status_reason or "")
    assert agreement(session, "agr-1", ["school"]) == (0, 0)  # not the police: still waiting
    assert waiting.status == "draft"
    assert agreement(session, "agr-2", ["school", "police_pdn"]) == (1, 0)
    assert waiting.status == "requested" and waiting.status_reason is None
    assert waiting.acknowledge_due_at is not None  # the SLA clock started, as for any send
    assert steps(session, waiting) == [(None, "draft"), ("draft", "requested")]
    assert consent.follow_consent(session, "fam-1", NOW) == (0, 0)  # a duplicate: no effect


def test_a_draft_made_by_hand_is_not_sent_for_its_author(session: Session) -> None:
    by_hand = domain.create_referral(
        session,
        COORD,
        {
            "family_id": "fam-1",
            "family_number": "Т-001",
            "district": "Тарнога",
            "agency_id": "pdn-1",
            "service_code": "pdn_check",
            "reason": "проверка",
            "draft": True,
        },
        NOW,
    )
    session.flush()
    agreement(session, "agr-1", ["police_pdn"])
    assert by_hand.status == "draft"


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("replaced", "no longer shares data with agencies of kind police_pdn"),
        ("withdrawn", "withdrew its agreement on 2026-03-02"),
        ("expired", "agreement expired on 2026-03-05"),
    ],
)
def test_consent_ending_before_the_answer_cancels_the_referral_with_the_reason(
    session: Session, how: str, expected: str
) -> None:
    # sent by a coordinator before any agreement: an override stays as it is
    overridden = domain.create_referral(
        session,
        COORD,
        {
            "family_id": "fam-1",
            "family_number": "Т-001",
            "district": "Тарнога",
            "agency_id": "pdn-1",
            "service_code": "pdn_check",
            "reason": "срочно",
        },
        NOW,
        consent_override_reason="угроза жизни",
    )
    agreement(session, "agr-1", ["police_pdn", "school"], until=TODAY + dt.timedelta(days=3))
    unanswered = measure(session)
    answered = measure(session, "m-2")
    for status in ("received", "accepted"):
        domain.transition(session, POLICE, answered, status, NOW)
    school = measure(session, "m-3", agency_id="school-1")
    assert unanswered.status == "requested" and answered.status == "accepted"
    session.flush()
    if how == "replaced":
        agreement(session, "agr-2", ["school"], signed=TODAY)
    elif how == "withdrawn":
        agreement(session, "agr-1", ["police_pdn", "school"], withdrawn=NOW)
    else:
        later = NOW + dt.timedelta(days=4)
        assert consent.families_to_follow(session, later.date()) == ["fam-1"]
        consent.follow_calendar(session, later)
    assert unanswered.status == "cancelled" and expected in (unanswered.status_reason or "")
    assert steps(session, unanswered)[-1] == ("requested", "cancelled")
    assert answered.status == "accepted"  # answered: the agency acts on what it has
    assert overridden.status == "requested" and overridden.consent_override
    if how == "replaced":
        assert school.status == "requested"  # the new agreement still shares with schools
    assert consent.follow_consent(session, "fam-1", NOW + dt.timedelta(days=4)) == (0, 0)


def test_an_agreement_signed_ahead_sends_the_drafts_on_its_first_day(session: Session) -> None:
    waiting = measure(session)
    starts = TODAY + dt.timedelta(days=2)
    assert agreement(session, "agr-1", ["police_pdn"], signed=starts) == (0, 0)
    assert consent.families_to_follow(session, TODAY) == []
    first_day = dt.datetime.combine(starts, dt.time(0, 1), tzinfo=dt.UTC)
    assert consent.follow_calendar(session, first_day) == (1, 0)
    assert waiting.status == "requested"


def test_a_signal_names_only_a_family_the_registry_announced(session: Session) -> None:
    rules = signals.SignalRules()
    body = {
        "district": "Тарнога",
        "observed": "ребёнок голоден",
        "observed_at": NOW,
        "family": {"surname": "Петровы"},
        "priority": "amber",
    }
    signal = signals.report(
        session, body, reporter_id="t-1", reporter_agency_id="school-1", now=NOW, rules=rules
    )
    with pytest.raises(RuleViolation) as refused:
        signals.accept(session, signal, by="coord-1", family_id="fam-9", now=NOW)
    assert refused.value.errors == {"family_id": ["no such family in the registry"]}
    assert signal.status == "new"
    session.add(KnownFamily(family_id="fam-9", number="Т-9", district="Тарнога", family_version=1))
    signals.accept(session, signal, by="coord-1", family_id="fam-9", now=NOW)
    session.flush()

    later = NOW + dt.timedelta(minutes=5)
    refusal = {
        "signal_id": signal.id,
        "family_id": "fam-9",
        "reason": "family-unknown",
        "detail": "no family fam-9",
        "accepted_at": NOW,
    }
    stale = {**refusal, "accepted_at": NOW - dt.timedelta(hours=1)}
    assert signals.return_to_triage(session, stale, later) is None  # not this acceptance
    assert signals.return_to_triage(session, refusal, later) is signal
    assert signal.status == "new" and signal.refusal_reason == "family-unknown"
    assert signal.refused_at == later and signal.decided_by is None
    assert signals.return_to_triage(session, refusal, later) is None  # a duplicate
    signals.dismiss(session, signal, by="coord-1", reason="семья уехала", now=later)
    assert signal.status == "dismissed"
