"""Referral SLA in working days (weekends, Russian holidays, transferred working days),
overdue reminders and escalations on a test clock, each published once; the per-year referral
numbers (also under concurrency on PostgreSQL); the coordinators' overdue view."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from conftest import System
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from services.referrals import directory, domain, numbering, sla
from services.referrals.domain import Actor
from services.referrals.models import Base, Referral, ReferralCounter, tables
from services.referrals.sla import ServiceSla, SlaRules, WorkCalendar
from shared.config import ConfigError

MSK = dt.timezone(dt.timedelta(hours=3))
SENDER = Actor("spec-1", "centre", sender=True, agency_member=False, may_override_consent=False)
STAFF = Actor("teacher-1", "school-1", False, True, False)
RULES = SlaRules(
    services={"*": ServiceSla(3, 20), "truancy_work": ServiceSla(1, 5)},
    escalate_after=2,
)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def msk(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=MSK)


# --- working days ------------------------------------------------------------------------------


def test_working_days_skip_weekends_and_russian_holidays() -> None:
    cal = WorkCalendar()
    assert cal.add_working_days(d("2026-03-05"), 1) == d("2026-03-06")  # Thu -> Fri
    assert cal.add_working_days(d("2026-03-06"), 1) == d("2026-03-10")  # Mon 9th: 8 March moved
    assert cal.add_working_days(d("2026-05-08"), 1) == d("2026-05-12")  # Mon 11th: 9 May moved
    assert cal.add_working_days(d("2026-12-30"), 1) == d("2027-01-11")  # new-year holidays
    assert cal.add_working_days(d("2026-06-10"), 2) == d("2026-06-15")  # Fri 12 June
    assert cal.add_working_days(d("2026-03-04"), 0) == d("2026-03-04")
    assert cal.working_days(d("2026-03-06"), d("2026-03-10")) == 2  # Fri, (Sat, Sun, Mon), Tue
    assert not cal.is_working(d("2026-01-09"))  # 3 January moved to Friday 9th
    assert cal.is_working(d("2026-01-12"))


def test_a_transferred_working_saturday_counts_and_holidays_are_configurable() -> None:
    rules = SlaRules.from_env(
        {
            "REFERRALS_HOLIDAYS": "2026-03-10",
            "REFERRALS_WORKDAYS": "2026-03-07",
            "REFERRALS_SLA": "counselling=2/7, *=4/30",
            "REFERRALS_SLA_ESCALATE_AFTER_DAYS": "3",
        }
    )
    cal = rules.calendar
    assert cal.is_working(d("2026-03-07"))  # a Saturday made working
    assert cal.is_working(d("2026-03-09"))  # the default list was replaced
    assert not cal.is_working(d("2026-03-10"))
    assert cal.add_working_days(d("2026-03-06"), 3) == d("2026-03-11")  # Sat 7, Mon 9, Wed 11
    assert rules.for_service("counselling") == ServiceSla(2, 7)
    assert rules.for_service("unknown") == ServiceSla(4, 30)
    assert rules.escalate_after == 3
    assert SlaRules.from_env({}).for_service("x") == ServiceSla(3, 20)


@pytest.mark.parametrize(
    "env",
    [
        {"REFERRALS_SLA": "counselling=2"},
        {"REFERRALS_SLA": "counselling=-1/3"},
        {"REFERRALS_HOLIDAYS": "2026-13-01"},
        {"REFERRALS_SLA_ESCALATE_AFTER_DAYS": "0"},
        {"REFERRALS_SLA_TIMEZONE": "Mars/Olympus"},
    ],
)
def test_a_wrong_sla_setting_stops_the_start(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        SlaRules.from_env(env)


def test_due_moments_are_the_end_of_a_local_working_day() -> None:
    sent = msk("2026-03-06T15:00")  # Friday; Monday 9 March is a holiday
    assert RULES.acknowledge_due("truancy_work", sent) == msk("2026-03-11T00:00")
    assert RULES.acknowledge_due("other", sent) == msk("2026-03-13T00:00")  # Tue, Wed, Thu
    assert RULES.complete_due("truancy_work", d("2026-04-01"), sent) == msk("2026-04-02T00:00")
    assert RULES.complete_due("truancy_work", None, sent) == msk("2026-03-17T00:00")
    # sent at 23:30 Moscow time is still Friday there, though Saturday nowhere yet in UTC
    assert RULES.acknowledge_due("truancy_work", msk("2026-03-05T23:30")) == msk("2026-03-07T00:00")


def test_days_overdue_count_working_days_only() -> None:
    due = msk("2026-03-07T00:00")  # end of Friday 6 March
    assert RULES.working_days_overdue(due, msk("2026-03-06T23:00")) == 0
    assert RULES.working_days_overdue(due, msk("2026-03-08T12:00")) == 0  # the weekend
    assert RULES.working_days_overdue(due, msk("2026-03-09T12:00")) == 0  # the holiday
    assert RULES.working_days_overdue(due, msk("2026-03-10T08:00")) == 1
    assert RULES.working_days_overdue(due, msk("2026-03-11T08:00")) == 2


# --- the overdue job ---------------------------------------------------------------------------


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def _setup(session: Session, now: dt.datetime, **data: object) -> Referral:
    directory.create_agency(
        session,
        {"id": "school-1", "name": "Школа", "kind": "school", "services": ["truancy_work"]},
        now,
    )
    directory.remember_agreement(
        session,
        {
            "agreement_id": "agr-1",
            "case_id": "case-1",
            "family_id": "fam-1",
            "signed_on": now.date() - dt.timedelta(days=10),
            "valid_until": now.date() + dt.timedelta(days=300),
            "consent_data_processing": True,
            "share_with": ["school"],
        },
    )
    payload = {
        "family_id": "fam-1",
        "family_number": "Т-001",
        "district": "Тарнога",
        "service_code": "truancy_work",
        "agency_id": "school-1",
        "reason": "пропуски",
        "contact": {"person_id": "spec-1"},
        **data,
    }
    return domain.create_referral(session, SENDER, payload, now)


def _events(session: Session, name: str) -> list[dict[str, object]]:
    rows = session.execute(
        select(tables.outbox.c.body).where(tables.outbox.c.event_type == name)
    ).scalars()
    return [json.loads(r)["data"] for r in rows]


def _send_with(session: Session, now: dt.datetime, **data: object) -> Referral:
    referral = _setup(session, now, draft=True, **data)
    domain.send(session, SENDER, referral, now, rules=RULES)
    return referral


def test_not_acknowledged_is_reminded_once_then_escalated_once(session: Session) -> None:
    sent = msk("2026-03-05T10:00")  # Thursday; 1 working day: due end of Friday
    referral = _send_with(session, sent)
    assert referral.acknowledge_due_at == msk("2026-03-07T00:00")
    changed = _events(session, "referrals.referral.status_changed")[-1]
    assert changed["number"] == referral.number and changed["acknowledge_due_at"]

    assert sla.check_overdue(session, RULES, msk("2026-03-06T23:59")) == []
    first = sla.check_overdue(session, RULES, msk("2026-03-07T09:00"))  # Saturday
    assert [n["event"] for n in first] == ["overdue"]
    assert first[0]["kind"] == "acknowledge" and first[0]["days_overdue"] == 0
    # reruns (another worker, a restart) publish nothing again, over the weekend and holiday
    for moment in ("2026-03-07T09:05", "2026-03-09T12:00", "2026-03-10T12:00"):
        assert sla.check_overdue(session, RULES, msk(moment)) == []
    escalated = sla.check_overdue(session, RULES, msk("2026-03-11T08:00"))  # 2nd working day
    assert [n["event"] for n in escalated] == ["escalated"]
    assert escalated[0]["district"] == "Тарнога" and escalated[0]["days_overdue"] == 2
    assert sla.check_overdue(session, RULES, msk("2026-03-20T08:00")) == []

    overdue_events = _events(session, "referrals.referral.overdue")
    escalated_events = _events(session, "referrals.referral.escalated")
    assert len(overdue_events) == 1 and len(escalated_events) == 1
    assert overdue_events[0]["number"] == referral.number
    assert overdue_events[0]["family_id"] == "fam-1"
    assert overdue_events[0]["agency_id"] == "school-1"
    assert referral.escalated_at == msk("2026-03-11T08:00")


def test_acknowledged_late_then_not_completed_by_the_deadline(session: Session) -> None:
    sent = msk("2026-03-05T10:00")
    referral = _send_with(session, sent, deadline=d("2026-03-20"))
    # the agency answers after the reminder: nothing more about acknowledging
    assert len(sla.check_overdue(session, RULES, msk("2026-03-07T09:00"))) == 1
    domain.transition(session, STAFF, referral, "received", msk("2026-03-10T09:00"))
    assert sla.check_overdue(session, RULES, msk("2026-03-13T09:00")) == []
    assert referral.due_at == msk("2026-03-21T00:00")  # end of the deadline day
    assert sla.check_overdue(session, RULES, msk("2026-03-20T23:00")) == []
    # the job was down for a week: both thresholds at once, each once
    late = sla.check_overdue(session, RULES, msk("2026-03-27T10:00"))
    assert [(n["event"], n["kind"]) for n in late] == [
        ("overdue", "complete"),
        ("escalated", "complete"),
    ]
    assert late[0]["days_overdue"] == 5  # Mon 23 - Fri 27
    assert sla.check_overdue(session, RULES, msk("2026-03-30T10:00")) == []
    kinds = [e["kind"] for e in _events(session, "referrals.referral.overdue")]
    assert kinds == ["acknowledge", "complete"]


def test_a_completed_or_cancelled_referral_is_never_overdue(session: Session) -> None:
    sent = msk("2026-03-05T10:00")
    referral = _send_with(session, sent)
    domain.transition(session, SENDER, referral, "cancelled", sent, reason="ошибка адресата")
    assert sla.check_overdue(session, RULES, msk("2026-04-30T10:00")) == []
    assert list(session.scalars(sla.overdue_query(msk("2026-04-30T10:00")))) == []


# --- numbers -----------------------------------------------------------------------------------


def test_numbers_run_per_year(session: Session) -> None:
    assert numbering.next_number(session, msk("2026-05-01T10:00")) == "R-2026-000001"
    assert numbering.next_number(session, msk("2026-05-01T10:00")) == "R-2026-000002"
    assert numbering.next_number(session, msk("2027-01-11T10:00")) == "R-2027-000001"
    assert numbering.next_number(session, msk("2026-12-01T10:00")) == "R-2026-000003"


@pytest.mark.integration
def test_numbers_are_unique_under_concurrency_on_postgresql(
    pg_databases: dict[str, str],
) -> None:
    engine = sa.create_engine(pg_databases["referrals"], pool_size=12)
    year = dt.datetime(2091, 6, 1, tzinfo=dt.UTC)
    with Session(engine) as s, s.begin():
        s.execute(sa.delete(ReferralCounter).where(ReferralCounter.year == 2091))
    got: list[str] = []
    start = threading.Barrier(10)

    def take() -> None:
        start.wait()
        for _ in range(5):
            with Session(engine) as s, s.begin():
                got.append(numbering.next_number(s, year))

    threads = [threading.Thread(target=take) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    assert sorted(got) == [f"R-2091-{n:06d}" for n in range(1, 51)]


# --- the coordinators' view --------------------------------------------------------------------


def _client(system: System, role: str, agency: str | None = None):  # type: ignore[no-untyped-def]
    c = system.app("referrals").test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token(role, agency=agency)}"
    return c


@pytest.mark.embedded
def test_overdue_view_for_coordinators_filters_by_district_and_agency(
    embedded_system: System,
) -> None:
    from services.referrals import handlers
    from shared.worker import JobContext

    now = dt.datetime.now(dt.UTC)
    admin = _client(embedded_system, "admin")
    for agency_id in ("school-1", "school-2"):
        assert (
            admin.post(
                "/agencies",
                json={
                    "id": agency_id,
                    "name": "Школа",
                    "kind": "school",
                    "services": ["truancy_work"],
                },
            ).status_code
            == 201
        )
    ids = []
    with embedded_system.session("referrals") as s, s.begin():
        directory.remember_agreement(
            s,
            {
                "agreement_id": "agr-1",
                "case_id": "c",
                "family_id": "fam-1",
                "signed_on": now.date() - dt.timedelta(days=1),
                "valid_until": now.date() + dt.timedelta(days=90),
                "consent_data_processing": True,
                "share_with": ["school"],
            },
        )
        for agency_id, district in (("school-1", "Тарнога"), ("school-2", "Сямжа")):
            r = _setup_referral(s, now, agency_id, district)
            ids.append(r.id)
    lead = _client(embedded_system, "lead_specialist")
    coordinator = _client(embedded_system, "coordinator")
    assert coordinator.get("/referrals/overdue").get_json()["total"] == 0
    with embedded_system.session("referrals") as s, s.begin():  # ten days later, as it were
        for r in s.scalars(select(Referral)):
            r.acknowledge_due_at = now - dt.timedelta(days=10)
    page = coordinator.get("/referrals/overdue").get_json()
    assert page["total"] == 2 and {i["kind"] for i in page["items"]} == {"acknowledge"}
    assert all(i["days_overdue"] >= 5 and i["number"].startswith("R-") for i in page["items"])
    only = coordinator.get("/referrals/overdue?district=Сямжа").get_json()
    assert [i["id"] for i in only["items"]] == [ids[1]]
    only = coordinator.get("/referrals/overdue?agency_id=school-1&kind=acknowledge").get_json()
    assert [i["id"] for i in only["items"]] == [ids[0]]
    assert coordinator.get("/referrals/overdue?kind=complete").get_json()["total"] == 0
    assert coordinator.get("/referrals/overdue?escalated=true").get_json()["total"] == 0
    assert coordinator.get("/referrals/overdue?escalated=false").get_json()["total"] == 2
    assert lead.get("/referrals/overdue").status_code == 403
    assert coordinator.get("/referrals/overdue?kind=late").status_code == 422

    ctx = JobContext(
        embedded_system.settings("referrals"),
        embedded_system.worker("referrals").sessions,
        tables,
    )
    handlers.check_referral_sla(ctx)
    handlers.check_referral_sla(ctx)  # a second run adds nothing
    with embedded_system.session("referrals") as s:
        names = s.execute(select(tables.outbox.c.event_type)).scalars().all()
    assert names.count("referrals.referral.overdue") == 2
    assert names.count("referrals.referral.escalated") == 2
    escalated = coordinator.get("/referrals/overdue").get_json()["items"]
    assert all(i["escalated_at"] for i in escalated)
    assert coordinator.get("/referrals/overdue?escalated=true").get_json()["total"] == 2
    assert coordinator.get("/referrals/overdue?escalated=false").get_json()["total"] == 0
    only = coordinator.get("/referrals/overdue?escalated=true&district=Сямжа").get_json()
    assert [i["id"] for i in only["items"]] == [ids[1]]


def _setup_referral(s: Session, now: dt.datetime, agency_id: str, district: str) -> Referral:
    return domain.create_referral(
        s,
        SENDER,
        {
            "family_id": "fam-1",
            "family_number": "Т-001",
            "district": district,
            "service_code": "truancy_work",
            "agency_id": agency_id,
            "reason": "пропуски",
            "contact": {"person_id": "spec-1"},
        },
        now,
    )


# --- reminders go the agency's way -------------------------------------------------------------


def test_the_reminder_reaches_a_webhook_agency_and_an_amqp_agency(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.referrals import agency_channel, outbound
    from services.referrals.models import Agency, WebhookDelivery, WebhookSubscription

    sent = msk("2026-03-05T10:00")
    referral = _send_with(session, sent)
    agency = session.get(Agency, "school-1")
    assert agency is not None
    agency.delivery = "webhook"
    session.add(
        WebhookSubscription(
            agency_id="school-1",
            url="http://127.0.0.1:9/x",
            events=["referrals.referral.overdue"],
            secret_encrypted="sealed",
            secret_hint="…abcd",
            created_by="admin",
        )
    )
    session.flush()
    sla.check_overdue(session, RULES, msk("2026-03-11T08:00"))  # reminder and escalation
    deliveries = session.scalars(select(WebhookDelivery)).all()
    assert [d.event for d in deliveries] == ["referrals.referral.overdue"]  # not the escalation
    assert deliveries[0].payload["data"]["kind"] == "acknowledge"
    assert deliveries[0].payload["referral"]["number"] == referral.number

    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(
        agency_channel,
        "stage_for_agency",
        lambda s, a, r, name, data: calls.append((a.id, name)),
    )
    agency.delivery = "amqp"
    outbound.dispatch(session, referral, "referrals.referral.claimed", {"referral_id": "x"})
    assert calls == [("school-1", "referrals.referral.claimed")]
    agency.delivery = "api"
    outbound.dispatch(session, referral, "referrals.referral.claimed", {"referral_id": "x"})
    assert len(calls) == 1 and len(session.scalars(select(WebhookDelivery)).all()) == 1
