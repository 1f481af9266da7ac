"""The rules added for the remaining events: a participant taken off a raid, an approval
decided, a referral claimed or commented on, a pending intake. Each is driven through the
handler the consumer calls (read model first, then the rules), on an SQLite file; who gets
what, on which channel, and nothing personal in a subject or an SMS."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.notifications import handlers as notification_handlers
from services.notifications.channels.sms import segments
from services.notifications.models import (
    Base,
    KnownCase,
    KnownMeasure,
    Message,
    RaidAttendee,
    Recipient,
    ReferralOwner,
)
from services.notifications.readmodels import remember_referral
from shared import db
from shared.config import load_settings
from shared.events import Event, load_all_event_types

UTC = dt.UTC
DISTRICT = "Тарногский район"
NOON = dt.datetime(2026, 3, 10, 9, tzinfo=UTC)  # 12:00 in Moscow: no quiet hours
REFERRAL = "ref-12345678-aaaa"


@pytest.fixture
def session(tmp_path: Any) -> Iterator[Session]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'n.db'}")
    Base.metadata.create_all(engine)
    with db.make_sessionmaker(engine)() as s:
        yield s
    engine.dispose()


@pytest.fixture(autouse=True)
def bound_settings(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the worker does at start-up: bind the service's settings to its handlers."""
    settings = load_settings(
        "notifications",
        env={"OPORA_DATA_DIR": str(tmp_path), "OPORA_PUBLIC_URL": "https://opora.test"},
    )
    monkeypatch.setattr(notification_handlers.handlers, "settings", settings)


def handle(session: Session, kind: str, data: dict[str, Any]) -> list[Message]:
    """Hand the event to its handler as the consumer does (data loaded by the producer's
    schema); the messages it made."""
    loaded = load_all_event_types().get(kind, 1).schema().load(data)
    event = Event(str(uuid.uuid4()), kind, 1, NOON, kind.split(".")[0], "t", None, loaded)
    before = set(session.scalars(select(Message.id)))
    notification_handlers.handlers.find(event)(session, event)
    session.flush()
    made = session.scalars(select(Message).where(Message.id.not_in(before))).all()
    return sorted(made, key=lambda m: (m.recipient_id, m.channel))


def staff(
    session: Session, person_id: str, *, roles: tuple[str, ...] = ("specialist",), **extra: Any
) -> None:
    values: dict[str, Any] = {
        "agency_id": "centre-1", "agency_name": "КЦСОН", "roles": list(roles),
        "districts": [DISTRICT], "email": f"{person_id}@opora.test", "phone": "+79110000001",
        "active": True,
    }  # fmt: skip
    values.update(extra)
    session.add(Recipient(person_id=person_id, **values))
    session.flush()


def who_how(made: list[Message]) -> list[tuple[str, str, str]]:
    return [(m.recipient_id, m.channel, m.priority) for m in made]


def no_personal_data(made: list[Message]) -> None:
    for message in made:
        shown = message.subject if message.channel == "email" else message.text
        for needle in ("Иванов", "Советская", "1990"):
            assert needle not in (shown or "")


# --- raids.participant.withdrawn ---------------------------------------------------------------

CANCEL_ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Opora//raids//RU\r\nMETHOD:CANCEL\r\n"
    "BEGIN:VEVENT\r\nUID:raid-1@opora\r\nSEQUENCE:1\r\nDTSTAMP:20260310T090000Z\r\n"
    "DTSTART:20260312T070000Z\r\nSUMMARY:Рейд\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


def test_a_withdrawn_participant_is_told_by_email_with_the_cancel_ics_and_by_sms(
    session: Session,
) -> None:
    staff(session, "teacher-1", agency_id="school-1")
    handle(session, "raids.raid.scheduled", {
        "raid_id": "raid-1", "title": "Рейд «Семья»", "purpose": "planned_check",
        "district": DISTRICT, "starts_at": "2026-03-12T07:00:00+00:00",
        "ends_at": "2026-03-12T12:00:00+00:00", "timezone": "Europe/Moscow",
        "coordinator_id": "coord-1", "raid_url": "https://opora.test/raids/raid-1",
        "family_ids": [], "series_id": None,
        "participants": [{"participant_id": "p-1", "person_id": "teacher-1",
                          "agency_id": "school-1", "email": None, "state": "confirmed"}],
    })  # fmt: skip
    made = handle(session, "raids.participant.withdrawn", {
        "raid_id": "raid-1", "participant_id": "p-1", "person_id": "teacher-1",
        "agency_id": "school-1", "agency_kind": "school", "role": "teacher",
        "coordinator_id": "coord-1", "raid_url": "https://opora.test/raids/raid-1",
        "sequence": 1, "ics": CANCEL_ICS, "ics_url": "https://opora.test/raids/raid-1.ics",
        "email": "teacher@school.test",
    })  # fmt: skip
    assert who_how(made) == [("teacher-1", "email", "normal"), ("teacher-1", "sms", "normal")]
    email, sms = made
    assert email.address == "teacher@school.test"  # the event's address wins
    assert email.attachments is not None
    [ics] = email.attachments
    assert ics["filename"] == "cancel.ics" and "method=CANCEL" in ics["content_type"]
    assert "12.03.2026 10:00" in (email.subject or "")  # the raid from the read model, local time
    assert sms.text == f"Вы сняты с рейда 12.03.2026 10:00: https://opora.test/r/{sms.short_code}"
    assert segments(sms.text).parts == 1
    attendee = session.get(RaidAttendee, ("raid-1", "teacher-1"))
    assert attendee is not None and attendee.state == "withdrawn"


# --- registry.case.approval_decided ------------------------------------------------------------


def approval(decision: str, decided_by: str, lead: str | None = "lead-1") -> dict[str, Any]:
    return {
        "case_id": "case-1234567890",
        "family_id": "fam-1",
        "number": "F-3A9C01B2D4",
        "district": DISTRICT,
        "lead_specialist": lead,
        "approval_id": "ap-1",
        "kind": "plan",
        "decision": decision,
        "decided_by": decided_by,
    }


def test_an_approval_decision_goes_to_the_cases_lead_by_email(session: Session) -> None:
    staff(session, "lead-1")
    staff(session, "coord-1", roles=("coordinator",))
    made = handle(session, "registry.case.approval_decided", approval("refused", "coord-1"))
    assert who_how(made) == [("lead-1", "email", "normal")]
    [email] = made
    assert email.subject == "Случай case-123: план реабилитации — отклонено"
    assert "https://opora.test/cases/case-1234567890" in (email.text or "")
    no_personal_data(made)


def test_no_message_when_the_lead_decided_or_there_is_none(session: Session) -> None:
    staff(session, "lead-1")
    assert handle(session, "registry.case.approval_decided", approval("approved", "lead-1")) == []
    assert (
        handle(session, "registry.case.approval_decided", approval("approved", "coord-1", None))
        == []
    )


# --- referrals.referral.claimed / commented ----------------------------------------------------


def known_referral(session: Session) -> None:
    """A referral sent by lead-1 for a measure of a case whose lead is case-lead."""
    session.add(KnownCase(case_id="case-1", family_id="fam-1", family_number="F-1",
                          district=DISTRICT, lead_person_id="case-lead", updated_at=NOON))  # fmt: skip
    session.add(KnownMeasure(measure_id="m-1", case_id="case-1", family_number="F-1",
                             kind="visit", deadline=dt.date(2026, 3, 20), status="referred",
                             measure_version=1))  # fmt: skip
    remember_referral(session, {
        "referral_id": REFERRAL, "measure_id": "m-1", "family_id": "fam-1",
        "agency_id": "school-1", "service_code": "counselling", "urgency": "routine",
        "status": "requested", "previous_status": None, "by": "lead-1", "referral_version": 1,
        "number": "R-2026-000001", "due_at": None,
    })  # fmt: skip
    for person_id, roles in (("lead-1", ()), ("case-lead", ()), ("head-1", ("head",)),
                             ("teacher-1", ("teacher",))):  # fmt: skip
        staff(session, person_id, roles=roles or ("specialist",),
              agency_id="school-1" if person_id in ("head-1", "teacher-1") else "centre-1",
              agency_name="Школа №1" if person_id in ("head-1", "teacher-1") else "КЦСОН")  # fmt: skip


def claimed(owner: str = "teacher-1", version: int = 2) -> dict[str, Any]:
    return {
        "referral_id": REFERRAL, "agency_id": "school-1", "owner_id": owner,
        "at": "2026-03-10T09:00:00+00:00", "referral_version": version,
    }  # fmt: skip


def test_a_claim_tells_the_sender_and_the_cases_lead_not_the_owner(session: Session) -> None:
    known_referral(session)
    made = handle(session, "referrals.referral.claimed", claimed())
    assert who_how(made) == [("case-lead", "email", "digest"), ("lead-1", "email", "digest")]
    assert made[0].subject == "Направление R-2026-000001 взято в работу"
    assert "Школа №1" in (made[0].text or "")  # the agency's name, in the body only
    owner = session.get(ReferralOwner, REFERRAL)
    assert owner is not None and owner.owner_id == "teacher-1"
    # an older claim arriving late changes nobody
    handle(session, "referrals.referral.claimed", claimed("head-1", version=1))
    assert session.get(ReferralOwner, REFERRAL).owner_id == "teacher-1"  # type: ignore[union-attr]


def commented(author: str, author_agency: str | None) -> dict[str, Any]:
    return {
        "referral_id": REFERRAL, "comment_id": str(uuid.uuid4()), "agency_id": "school-1",
        "sender_id": "lead-1", "author_id": author, "author_agency_id": author_agency,
        "at": "2026-03-10T09:00:00+00:00",
    }  # fmt: skip


def test_a_comment_from_the_agency_goes_to_the_sending_side(session: Session) -> None:
    known_referral(session)
    made = handle(session, "referrals.referral.commented", commented("teacher-1", "school-1"))
    assert who_how(made) == [("case-lead", "email", "normal"), ("lead-1", "email", "normal")]
    assert made[0].subject == "Новый комментарий к направлению R-2026-000001"


def test_a_comment_from_the_sender_goes_to_the_owner_or_else_the_agencys_handlers(
    session: Session,
) -> None:
    known_referral(session)
    unclaimed = handle(session, "referrals.referral.commented", commented("lead-1", "centre-1"))
    assert who_how(unclaimed) == [("head-1", "email", "normal")]  # the referral-handling role
    handle(session, "referrals.referral.claimed", claimed("teacher-1"))
    owned = handle(session, "referrals.referral.commented", commented("lead-1", "centre-1"))
    assert who_how(owned) == [("teacher-1", "email", "normal")]
    # the owner commenting tells the sending side, never the owner
    own = handle(session, "referrals.referral.commented", commented("teacher-1", "school-1"))
    assert "teacher-1" not in [m.recipient_id for m in own]


# --- registry.intake.pending -------------------------------------------------------------------


def test_a_pending_intake_goes_to_the_districts_coordinators(session: Session) -> None:
    staff(session, "coord-1", roles=("coordinator",))
    staff(session, "coord-2", roles=("coordinator",), districts=["Другой район"])
    staff(session, "spec-1")
    signal_id = "5e1f0000-0000-4000-8000-000000000001"
    made = handle(session, "registry.intake.pending", {
        "intake_id": "in-1", "signal_id": signal_id, "district": DISTRICT, "candidates": 3,
    })  # fmt: skip
    assert who_how(made) == [("coord-1", "email", "normal")]
    [email] = made
    assert email.subject == "Сигнал 5e1f0000 принят: укажите семью"
    assert "Возможных совпадений: 3" in (email.text or "")
    assert email.link == "https://opora.test/intakes/in-1"


def test_the_new_rules_are_listed_and_wired() -> None:
    from services.notifications import rules

    listed = {r["event_type"] for r in rules.describe_all()}
    added = {
        "raids.participant.withdrawn", "registry.case.approval_decided",
        "referrals.referral.claimed", "referrals.referral.commented", "registry.intake.pending",
    }  # fmt: skip
    assert added <= listed
    assert added <= set(notification_handlers.handlers.routing_keys())
