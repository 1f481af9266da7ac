"""Referral rules without HTTP or broker: every lifecycle step (legal and illegal), who may take
it, what it needs; the consent check; referrals from plan measures; signal SLA on a test clock."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from services.referrals import directory, domain, intake, signals
from services.referrals.domain import STATUSES, TRANSITIONS, Actor, check_transition
from services.referrals.models import Base, KnownFamily, Referral, tables
from shared.config import ConfigError
from shared.errors import Conflict, Forbidden, RuleViolation
from shared.events import Event, build_envelope, load_all_event_types, parse_envelope

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
LEGAL = sorted((a, b) for a in STATUSES for b in TRANSITIONS[a])
ILLEGAL = sorted(
    (a, b) for a, b in itertools.product(STATUSES, STATUSES) if b not in TRANSITIONS[a]
)
SENDER = Actor("spec-1", "centre", sender=True, agency_member=False, may_override_consent=False)
COORD = Actor("coord-1", None, True, False, may_override_consent=True, cross_agency=True)
SCHOOL_STAFF = Actor("teacher-1", "school-1", False, True, False)
OTHER_STAFF = Actor("teacher-9", "school-2", False, True, False)


def test_the_lifecycle_covers_the_fhir_task_statuses() -> None:
    assert set(TRANSITIONS) == set(STATUSES)
    assert len(LEGAL) + len(ILLEGAL) == len(STATUSES) ** 2
    assert TRANSITIONS["entered-in-error"] == frozenset()


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_legal_transition_passes_with_what_it_needs(current: str, target: str) -> None:
    check_transition(current, target, reason="причина", outcome="итог")


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_illegal_transition_is_a_conflict_naming_both_statuses(current: str, target: str) -> None:
    with pytest.raises(Conflict) as exc:
        check_transition(current, target, reason="r", outcome="o")
    assert f"from {current} to {target}" in exc.value.detail
    assert exc.value.code == "illegal-transition"


@pytest.mark.parametrize(
    ("current", "target"), [p for p in LEGAL if p[1] in domain.REASON_REQUIRED]
)
def test_reason_is_required(current: str, target: str) -> None:
    with pytest.raises(RuleViolation) as exc:
        check_transition(current, target, reason="  ", outcome="o")
    assert exc.value.errors == {"reason": [f"required for {target}"]}


@pytest.mark.parametrize(("current", "target"), [("in-progress", "completed")])
def test_outcome_is_required(current: str, target: str) -> None:
    with pytest.raises(RuleViolation) as exc:
        check_transition(current, target)
    assert exc.value.errors is not None and "outcome" in exc.value.errors


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_each_step_belongs_to_one_side(current: str, target: str) -> None:
    kwargs = {"reason": "r", "outcome": "o"}
    if target in domain.SENDER_STEPS:
        with pytest.raises(Forbidden):
            check_transition(current, target, as_sender=False, **kwargs)
    else:
        with pytest.raises(Forbidden):
            check_transition(current, target, as_agency=False, **kwargs)


# --- with a database ---------------------------------------------------------------------------


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def _agency(session: Session, agency_id: str = "school-1", kind: str = "school") -> None:
    directory.create_agency(
        session,
        {
            "id": agency_id,
            "name": "Школа",
            "kind": kind,
            "districts": ["Тарнога"],
            "services": ["truancy_work"],
            "contacts": [{"person_id": "teacher-1", "name": "Педагог", "role": "social_pedagogue"}],
        },
        NOW,
    )


def _consent(
    session: Session, family_id: str = "fam-1", kinds: tuple[str, ...] = ("school",)
) -> None:
    directory.remember_agreement(
        session,
        {
            "agreement_id": f"agr-{family_id}",
            "case_id": "case-1",
            "family_id": family_id,
            "signed_on": NOW.date() - dt.timedelta(days=10),
            "valid_until": NOW.date() + dt.timedelta(days=300),
            "consent_data_processing": True,
            "share_with": list(kinds),
        },
    )


def _data(**extra: object) -> dict[str, object]:
    return {
        "family_id": "fam-1",
        "family_number": "Т-001",
        "district": "Тарнога",
        "service_code": "truancy_work",
        "agency_id": "school-1",
        "reason": "пропуски",
        "contact": {"person_id": "spec-1"},
        **extra,
    }


def _events(session: Session, name: str) -> list[dict[str, object]]:
    rows = session.execute(
        select(tables.outbox.c.body).where(tables.outbox.c.event_type == name)
    ).scalars()
    return [json.loads(r)["data"] for r in rows]


def test_a_referral_walks_the_happy_path_with_history_and_events(session: Session) -> None:
    _agency(session)
    _consent(session)
    referral = domain.create_referral(session, SENDER, _data(), NOW)
    assert referral.status == "requested"
    steps = [
        ("received", None, None),
        ("accepted", None, None),
        ("in-progress", None, None),
        ("on-hold", "каникулы", None),
        ("in-progress", None, None),
        ("completed", None, "посещает"),
    ]
    for i, (target, reason, outcome) in enumerate(steps):
        domain.transition(
            session,
            SCHOOL_STAFF,
            referral,
            target,
            NOW + dt.timedelta(hours=i),
            reason=reason,
            outcome=outcome,
        )
    assert referral.status == "completed" and referral.outcome == "посещает"
    assert [h.to_status for h in referral.history] == [
        "requested",
        "received",
        "accepted",
        "in-progress",
        "on-hold",
        "in-progress",
        "completed",
    ]
    assert referral.history[0].from_status is None
    assert [h.by for h in referral.history][-1] == "teacher-1"
    events = _events(session, "referrals.referral.status_changed")
    assert [e["status"] for e in events][-1] == "completed"
    assert events[-1]["previous_status"] == "in-progress"
    assert events[-1]["referral_version"] == referral.version == 7


def test_a_referral_sent_at_once_is_one_step_with_one_event(session: Session) -> None:
    _agency(session)
    _consent(session)
    referral = domain.create_referral(session, SENDER, _data(), NOW)
    assert [(h.from_status, h.to_status, h.seq) for h in referral.history] == [
        (None, "requested", 1)
    ]
    [sent] = _events(session, "referrals.referral.status_changed")
    assert (sent["previous_status"], sent["status"], sent["referral_version"]) == (
        None,
        "requested",
        1,
    )
    assert sent["number"] == referral.number and sent["acknowledge_due_at"] is not None


def test_a_refused_referral_takes_no_number(session: Session) -> None:
    _agency(session)
    _consent(session, kinds=("health",))
    with pytest.raises(RuleViolation):
        domain.create_referral(session, SENDER, _data(), NOW)
    _consent(session, family_id="fam-2")
    first = domain.create_referral(session, SENDER, _data(family_id="fam-2"), NOW)
    assert first.number == f"R-{NOW.year}-000001"


def test_another_agency_cannot_move_or_see_a_referral(session: Session) -> None:
    _agency(session)
    _consent(session)
    referral = domain.create_referral(session, SENDER, _data(), NOW)
    assert not domain.can_see(OTHER_STAFF, referral)
    with pytest.raises(Forbidden):
        domain.transition(session, OTHER_STAFF, referral, "received", NOW)
    with pytest.raises(Forbidden):
        domain.transition(session, SCHOOL_STAFF, referral, "cancelled", NOW, reason="x")


def test_a_stale_version_is_refused(session: Session) -> None:
    _agency(session)
    _consent(session)
    referral = domain.create_referral(session, SENDER, _data(), NOW)
    domain.transition(session, SCHOOL_STAFF, referral, "received", NOW, expected_version=1)
    with pytest.raises(Conflict, match="version"):
        domain.transition(session, SCHOOL_STAFF, referral, "accepted", NOW, expected_version=1)


def test_without_consent_the_referral_is_refused_unless_a_coordinator_overrides(
    session: Session,
) -> None:
    _agency(session)
    _consent(session, kinds=("health",))
    with pytest.raises(RuleViolation) as exc:
        domain.create_referral(session, SENDER, _data(), NOW)
    assert exc.value.code == "consent-missing" and "agency_id" in (exc.value.errors or {})
    with pytest.raises(Forbidden):
        domain.create_referral(session, SENDER, _data(), NOW, consent_override_reason="угроза")
    session.rollback()
    _agency(session)
    referral = domain.create_referral(
        session, COORD, _data(), NOW, consent_override_reason="угроза"
    )
    assert referral.status == "requested" and referral.consent_override
    assert referral.consent_override_reason == "угроза"


def test_expired_or_narrowed_consent_does_not_count(session: Session) -> None:
    _consent(session)
    assert directory.has_consent(session, "fam-1", "school", NOW.date())
    assert not directory.has_consent(
        session, "fam-1", "school", NOW.date() + dt.timedelta(days=400)
    )
    assert not directory.has_consent(session, "fam-1", "police_pdn", NOW.date())
    assert directory.has_consent(session, "fam-x", "family_centre", NOW.date())


def test_claim_by_the_agency_staff_once(session: Session) -> None:
    _agency(session)
    _consent(session)
    referral = domain.create_referral(session, SENDER, _data(), NOW)
    with pytest.raises(Forbidden):
        domain.claim(session, OTHER_STAFF, referral, NOW)
    domain.claim(session, SCHOOL_STAFF, referral, NOW)
    assert referral.owner_id == "teacher-1"
    other_teacher = Actor("teacher-2", "school-1", False, True, False)
    with pytest.raises(Conflict):
        domain.claim(session, other_teacher, referral, NOW)


MEASURE = {
    "measure_id": "m-1",
    "case_id": "case-1",
    "family_id": "fam-1",
    "number": "Т-001",
    "district": "Тарнога",
    "agency_id": None,
    "kind": "truancy_work",
    "title": "Работа с пропусками",
    "deadline": NOW.date() + dt.timedelta(days=30),
    "status": "planned",
    "measure_version": 1,
}


def test_a_measure_becomes_one_referral_routed_by_the_rules(session: Session) -> None:
    _agency(session)
    _consent(session)
    directory.add_rule(
        session,
        {"service_code": "truancy_work", "district": "*", "agency_id": "school-1"},
        "admin",
        NOW,
    )
    referral = intake.referral_from_measure(session, MEASURE, NOW)
    assert referral is not None and referral.status == "requested"
    assert referral.agency_id == "school-1" and referral.measure_id == "m-1"
    assert intake.referral_from_measure(session, MEASURE, NOW) is None
    assert len(session.scalars(select(Referral)).all()) == 1


def test_a_measure_without_route_or_consent_waits_as_a_draft(session: Session) -> None:
    unrouted = intake.referral_from_measure(session, MEASURE, NOW)
    assert unrouted is not None and unrouted.status == "draft" and unrouted.agency_id is None
    _agency(session)
    no_consent = intake.referral_from_measure(
        session, {**MEASURE, "measure_id": "m-2", "agency_id": "school-1"}, NOW
    )
    assert no_consent is not None and no_consent.status == "draft"
    assert "consented" in (no_consent.status_reason or "")
    unknown = intake.referral_from_measure(
        session, {**MEASURE, "measure_id": "m-3", "agency_id": "nope"}, NOW
    )
    assert unknown is not None and unknown.agency_id is None


def test_directory_changes_publish_snapshots_with_contacts(session: Session) -> None:
    _agency(session)
    agency = directory.get_agency(session, "school-1")
    directory.upsert_contact(
        session,
        agency,
        {
            "person_id": "teacher-2",
            "name": "Б",
            "role": "head",
            "email": "b@school.test",
            "preferences": {"sms": True},
        },
        NOW,
    )
    directory.remove_contact(session, agency, "teacher-1", NOW)
    created = _events(session, "referrals.agency.created")[0]
    assert created["contacts"][0]["person_id"] == "teacher-1" and created["districts"] == [
        "Тарнога"
    ]
    changes = _events(session, "referrals.contact.changed")
    assert [(c["change"], c["contact"]["person_id"]) for c in changes] == [
        ("added", "teacher-2"),
        ("removed", "teacher-1"),
    ]
    assert _events(session, "referrals.agency.updated")[-1]["agency_version"] == 3


# --- signals -----------------------------------------------------------------------------------

SIGNAL = {
    "district": "Тарнога",
    "observed": "синяки",
    "observed_at": NOW - dt.timedelta(hours=1),
    "family": {"surname": "Петровы"},
}


@pytest.mark.parametrize(("priority", "hours"), [("red", 2), ("amber", 6), ("green", 24)])
def test_signal_deadline_and_escalation_on_a_test_clock(
    session: Session, priority: str, hours: int
) -> None:
    rules = signals.SignalRules()
    signal = signals.report(
        session,
        {**SIGNAL, "priority": priority},
        reporter_id="t",
        reporter_agency_id="school-1",
        now=NOW,
        rules=rules,
    )
    assert signal.triage_due_at == NOW + dt.timedelta(hours=hours)
    assert bool(_events(session, "referrals.signal.urgent")) is (priority == "red")
    just_before = NOW + dt.timedelta(hours=hours) - dt.timedelta(seconds=1)
    assert signals.escalate_overdue(session, just_before) == []
    assert signals.escalate_overdue(session, NOW + dt.timedelta(hours=hours)) == [signal]
    assert signals.escalate_overdue(session, NOW + dt.timedelta(hours=hours + 5)) == []
    assert len(_events(session, "referrals.signal.escalated")) == 1


def test_a_triaged_signal_is_not_escalated_and_is_triaged_once(session: Session) -> None:
    signal = signals.report(
        session,
        {**SIGNAL, "priority": "amber"},
        reporter_id="t",
        reporter_agency_id=None,
        now=NOW,
        rules=signals.SignalRules(),
    )
    session.add(
        KnownFamily(family_id="fam-1", number="Т-001", district="Тарнога", family_version=1)
    )
    signals.accept(session, signal, by="coord-1", family_id="fam-1", now=NOW)
    assert signals.escalate_overdue(session, NOW + dt.timedelta(days=2)) == []
    with pytest.raises(Conflict):
        signals.dismiss(session, signal, by="coord-1", reason="дубль", now=NOW)
    accepted = _events(session, "referrals.signal.accepted")[0]
    assert accepted["family_id"] == "fam-1" and accepted["family"]["surname"] == "Петровы"


def test_sla_hours_are_configurable_and_checked() -> None:
    rules = signals.SignalRules.from_env({"REFERRALS_SIGNAL_SLA_HOURS": "red=1, green=48"})
    assert rules.sla_hours == {"red": 1.0, "amber": 6.0, "green": 48.0}
    for bad in ("purple=1", "red=soon", "red=0"):
        with pytest.raises(ConfigError):
            signals.SignalRules.from_env({"REFERRALS_SIGNAL_SLA_HOURS": bad})


def _agreement_event(name: str, **extra: object) -> Event:
    """An agreement event as the registry publishes it and the consumer loads it."""
    data = {
        "agreement_id": "agr-w",
        "case_id": "case-1",
        "family_id": "fam-1",
        "signed_on": (NOW.date() - dt.timedelta(days=10)).isoformat(),
        "valid_until": (NOW.date() + dt.timedelta(days=300)).isoformat(),
        "consent_data_processing": True,
        "share_with": ["school"],
        **extra,
    }
    load_all_event_types()
    envelope = build_envelope(name, data, producer="registry", correlation_id="t")
    return parse_envelope(json.dumps(envelope).encode())


@pytest.mark.parametrize("withdrawal_first", [False, True])
def test_a_withdrawn_agreement_ends_consent_whichever_event_comes_first(
    session: Session, withdrawal_first: bool
) -> None:
    from services.referrals.handlers import handlers

    recorded = _agreement_event("registry.agreement.recorded")
    withdrawn = _agreement_event(
        "registry.agreement.withdrawn",
        withdrawn_at=NOW.isoformat(),
        reason="Семья отозвала согласие",
    )
    older = dict(
        recorded.data, agreement_id="agr-old", signed_on=NOW.date() - dt.timedelta(days=60)
    )
    directory.remember_agreement(session, older)  # replaced by agr-w, and it stays replaced
    order = [withdrawn, recorded] if withdrawal_first else [recorded, withdrawn]
    for event in [*order, recorded]:  # a late duplicate of the recording too
        handlers.find(event)(session, event)
        session.flush()
    assert not directory.has_consent(session, "fam-1", "school", NOW.date())
    assert directory.has_consent(session, "fam-1", "family_centre", NOW.date())
