"""Domain tests of the notifications core, no network: preferences and time rules, the message
state machine and back-off, SMS failover order, rules and recipients, dedup, reminders, digest,
retention (on an SQLite file)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.notifications import (
    capabilities,
    delivery,
    digests,
    domain,
    preferences,
    readmodels,
    reminders,
    rules,
    states,
)
from services.notifications.channels.base import PermanentFailure, Sent, Sms, TemporaryFailure
from services.notifications.channels.sms import segments
from services.notifications.models import (
    Base,
    KnownCase,
    KnownMeasure,
    Message,
    MessageHistory,
    Preference,
    Recipient,
)
from services.notifications.preferences import Prefs
from shared import db
from shared.config import load_settings
from shared.events import Event

UTC = dt.UTC
MSK = "Europe/Moscow"  # UTC+3, no DST
VLAD = "Asia/Vladivostok"  # UTC+10


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A UTC moment in a fixed test month."""
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=UTC)


# --- preferences and time ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("utc_hour", "quiet"),
    [(17, False), (18, True), (23, True), (4, True), (5, False), (12, False)],
)
def test_quiet_hours_span_midnight_in_the_persons_zone(utc_hour: int, quiet: bool) -> None:
    prefs = Prefs(timezone=MSK)  # 21:00-08:00 Moscow = 18:00-05:00 UTC
    assert preferences.in_quiet_hours(prefs, at(10, utc_hour)) is quiet


def test_quiet_hours_follow_the_time_zone() -> None:
    noon_utc = at(10, 12)  # 15:00 in Moscow, 22:00 in Vladivostok
    assert not preferences.in_quiet_hours(Prefs(timezone=MSK), noon_utc)
    assert preferences.in_quiet_hours(Prefs(timezone=VLAD), noon_utc)


def test_quiet_hours_end_is_the_next_morning_before_midnight_and_the_same_morning_after() -> None:
    prefs = Prefs(timezone=MSK)
    assert preferences.quiet_hours_end(prefs, at(10, 19)) == at(11, 5)  # 22:00 -> 08:00 next day
    assert preferences.quiet_hours_end(prefs, at(11, 1)) == at(11, 5)  # 04:00 -> 08:00 same day
    assert preferences.quiet_hours_end(prefs, at(11, 9)) == at(11, 9)  # not quiet: now


def test_daytime_quiet_hours_and_none() -> None:
    siesta = Prefs(timezone="UTC", quiet_start=dt.time(13), quiet_end=dt.time(15))
    assert preferences.in_quiet_hours(siesta, at(10, 14))
    assert not preferences.in_quiet_hours(siesta, at(10, 15))
    assert not preferences.in_quiet_hours(Prefs(quiet_start=None, quiet_end=None), at(10, 23))


def test_digest_moment_is_the_latest_digest_hour_in_local_time() -> None:
    prefs = Prefs(timezone=MSK, digest_hour=dt.time(8))
    day, moment = preferences.digest_moment(prefs, at(10, 4, 59))  # 07:59 Moscow
    assert (day, moment) == (dt.date(2026, 3, 9), at(9, 5))
    day, moment = preferences.digest_moment(prefs, at(10, 5))  # 08:00 Moscow
    assert (day, moment) == (dt.date(2026, 3, 10), at(10, 5))
    vlad = Prefs(timezone=VLAD, digest_hour=dt.time(8))
    day, moment = preferences.digest_moment(vlad, at(9, 23))  # 09:00 on the 10th there
    assert (day, moment) == (dt.date(2026, 3, 10), at(9, 22))


def test_decide_urgent_passes_quiet_hours_normal_sms_is_held_email_is_not() -> None:
    night = at(10, 20)  # 23:00 Moscow
    prefs = Prefs(timezone=MSK)
    urgent = preferences.decide(prefs, "sms", "urgent", night)
    assert urgent.state == "queued"
    normal = preferences.decide(prefs, "sms", "normal", night)
    assert (normal.state, normal.hold_reason, normal.held_until) == (
        "held",
        "quiet_hours",
        at(11, 5),
    )
    assert preferences.decide(prefs, "email", "normal", night).state == "queued"


def test_decide_digest_opt_out_and_channels_off() -> None:
    noon = at(10, 9)
    digest = Prefs(digest=True)
    assert preferences.decide(digest, "email", "digest", noon).hold_reason == "digest"
    assert preferences.decide(digest, "email", "normal", noon).state == "queued"
    assert (
        preferences.decide(digest, "email", "digest", noon, has_attachments=True).state == "queued"
    )
    assert preferences.decide(digest, "email", "urgent", noon).state == "queued"
    only_urgent = Prefs(only_urgent=True)
    assert preferences.decide(only_urgent, "email", "normal", noon).state is None
    assert preferences.decide(only_urgent, "sms", "urgent", noon).state == "queued"
    assert preferences.decide(Prefs(sms=False), "sms", "urgent", noon).state is None


def test_directory_preferences_are_read_leniently() -> None:
    prefs = preferences.from_directory({"email": True, "sms": False, "quiet_hours": "22:30-07:00"})
    assert (prefs.sms, prefs.quiet_start, prefs.quiet_end) == (False, dt.time(22, 30), dt.time(7))
    assert (
        preferences.from_directory({"quiet_hours": "nonsense", "sms": "yes"})
        == preferences.DEFAULTS
    )


# --- the state machine -------------------------------------------------------------------------


def _message(state: str | None = None) -> Message:
    return Message(id=str(uuid.uuid4()), state=state)


@pytest.mark.parametrize(
    "path",
    [
        ["queued", "sending", "sent", "delivered"],
        ["queued", "sending", "sent", "failed"],
        ["queued", "sending", "sent", "bounced"],
        ["queued", "sending", "queued", "sending", "failed"],
        ["held", "queued", "sending", "sent"],
        ["held", "delivered"],
        ["queued", "sending", "sent", "delivered", "bounced"],
    ],
)
def test_legal_paths_write_one_history_row_per_move(path: list[str]) -> None:
    message = _message()
    rows = [states.move(message, to, at(10, 9), provider="p") for to in path]
    assert message.state == path[-1]
    assert [(r.from_state, r.to_state) for r in rows] == list(
        zip([None, *path[:-1]], path, strict=True)
    )
    assert all(r.message_id == message.id for r in rows)


@pytest.mark.parametrize(
    ("start", "to"),
    [
        ("delivered", "sending"),
        ("failed", "queued"),
        ("bounced", "delivered"),
        ("queued", "sent"),
        ("sent", "queued"),
        ("held", "sending"),
        (None, "sent"),
        ("queued", "nonsense"),
    ],
)
def test_illegal_moves_raise_and_change_nothing(start: str | None, to: str) -> None:
    message = _message(start)
    with pytest.raises(states.IllegalTransition):
        states.move(message, to, at(10, 9))
    assert message.state == start


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    delays = [states.backoff(n, rng) for n in range(1, 6)]
    for n, delay in enumerate(delays, 1):
        base = states.BASE_DELAY * 2**n
        assert 0.5 * base <= delay <= 1.5 * base
    assert states.backoff(30, rng) <= 1.5 * states.MAX_DELAY
    assert len({round(states.backoff(3, rng), 6) for _ in range(20)}) > 1  # jitter
    assert states.gives_up(states.MAX_ATTEMPTS) and not states.gives_up(states.MAX_ATTEMPTS - 1)


# --- SMS failover ------------------------------------------------------------------------------


class FakeProvider:
    def __init__(self, name: str, fail: type[Exception] | None = None) -> None:
        self.name = name
        self.fail = fail
        self.sent: list[Sms] = []

    def send(self, sms: Sms) -> Sent:
        if self.fail is TemporaryFailure:
            raise TemporaryFailure("throttled")
        if self.fail is PermanentFailure:
            raise PermanentFailure("number refused")
        self.sent.append(sms)
        return Sent(self.name, (f"{self.name}-{len(self.sent)}",))

    def receipts(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def test_sms_fails_over_to_the_next_provider_and_says_which_sent_it() -> None:
    first, second = FakeProvider("a", TemporaryFailure), FakeProvider("b")
    outcome = delivery.send_sms(delivery.SmsPool([first, second]), Sms("m", "+79110000000", "x"), 0)
    assert outcome.sent is not None and outcome.sent.provider == "b"
    assert outcome.tried == ("a: throttled",)


def test_a_provider_failing_repeatedly_goes_last_until_it_cools_down() -> None:
    clock = [0.0]
    first, second = FakeProvider("a", TemporaryFailure), FakeProvider("b")
    pool = delivery.SmsPool([first, second], unhealthy_after=2, cooldown=30, clock=lambda: clock[0])
    for _ in range(2):
        delivery.send_sms(pool, Sms("m", "+7", "x"), 0)
    assert [p.name for _, p in pool.order(0)] == ["b", "a"]
    clock[0] = 31
    assert [p.name for _, p in pool.order(0)] == ["a", "b"]


def test_permanent_sms_failure_does_not_fail_over_and_all_temporary_is_temporary() -> None:
    pool = delivery.SmsPool([FakeProvider("a", PermanentFailure), FakeProvider("b")])
    assert delivery.send_sms(pool, Sms("m", "+7", "x"), 0).permanent == "a: number refused"
    both_down = delivery.SmsPool(
        [FakeProvider("a", TemporaryFailure), FakeProvider("b", TemporaryFailure)]
    )
    outcome = delivery.send_sms(both_down, Sms("m", "+7", "x"), 0)
    assert outcome.sent is None and outcome.temporary == "a: throttled; b: throttled"


# --- rules, recipients and messages (SQLite) ---------------------------------------------------


@pytest.fixture
def session(tmp_path) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    engine = db.make_engine(f"sqlite:///{tmp_path / 'n.db'}")
    Base.metadata.create_all(engine)
    with db.make_sessionmaker(engine)() as s:
        yield s
    engine.dispose()


@pytest.fixture
def settings(tmp_path):  # type: ignore[no-untyped-def]
    return load_settings(
        "notifications",
        env={"OPORA_DATA_DIR": str(tmp_path), "OPORA_PUBLIC_URL": "https://opora.test"},
    )


def event(kind: str, data: dict[str, Any], when: dt.datetime | None = None) -> Event:
    return Event(str(uuid.uuid4()), kind, 1, when or at(10, 9), kind.split(".")[0], "t", None, data)


def agency(version: int = 1, delivery: str = "api", **contact: Any) -> dict[str, Any]:
    person = {
        "person_id": "staff-1", "name": "Петрова Анна", "role": "head",
        "email": "head@school.test", "phone": "8 (911) 123-45-67", "preferences": {}, "active": True,
    }  # fmt: skip
    person.update(contact)
    return {
        "agency_id": "school-1", "name": "Школа №1", "kind": "school", "districts": ["Тарногский район"],
        "services": [], "email": None, "phone": None, "active": True, "contacts": [person],
        "agency_version": version, "delivery": delivery,
    }  # fmt: skip


def test_agency_snapshots_keep_the_newest_version_and_normalise_phones(session: Session) -> None:
    readmodels.remember_agencies(session, [event("referrals.agency.created", agency(2))])
    readmodels.remember_agencies(
        session, [event("referrals.agency.updated", agency(1, email="old@school.test"))]
    )
    recipient = session.get(Recipient, "staff-1")
    assert recipient is not None
    assert (recipient.email, recipient.phone, recipient.roles) == (
        "head@school.test",
        "+79111234567",
        ["head"],
    )
    readmodels.remember_agencies(
        session, [event("referrals.agency.updated", {**agency(3), "contacts": []})]
    )
    assert session.get(Recipient, "staff-1").active is False  # type: ignore[union-attr]


def test_directory_preferences_do_not_override_the_persons_own(session: Session) -> None:
    readmodels.remember_agencies(
        session, [event("referrals.agency.created", agency(1, preferences={"sms": False}))]
    )
    assert preferences.for_person(session, "staff-1").sms is False
    preferences.save_own(session, "staff-1", {"sms": True, "language": "en"})
    readmodels.remember_agencies(
        session, [event("referrals.agency.updated", agency(2, preferences={"sms": False}))]
    )
    assert preferences.for_person(session, "staff-1").sms is True
    assert session.get(Preference, "staff-1").source == "self"  # type: ignore[union-attr]


def add_coordinator(
    session: Session, person_id: str = "coord-1", district: str = "Тарногский район"
) -> None:
    session.add(
        Recipient(
            person_id=person_id, roles=["coordinator"], districts=[district],
            email=f"{person_id}@district.test", phone="+79110000001", active=True,
        )
    )  # fmt: skip
    session.flush()


def signal(district: str = "Тарногский район") -> dict[str, Any]:
    return {
        "signal_id": str(uuid.uuid4()), "district": district, "priority": "red",
        "reporter_agency_id": None, "triage_due_at": at(10, 11),
    }  # fmt: skip


def test_urgent_signal_goes_by_email_and_sms_at_night_to_the_districts_coordinators(
    session: Session, settings: Any
) -> None:
    add_coordinator(session)
    add_coordinator(session, "coord-other", "Другой район")
    data = signal()
    made = domain.notify(session, settings, "ev-1", "referrals.signal.urgent", data, at(10, 21))
    assert sorted((m.recipient_id, m.channel, m.state) for m in made) == [
        ("coord-1", "email", "queued"), ("coord-1", "sms", "queued"),
    ]  # fmt: skip
    sms = next(m for m in made if m.channel == "sms")
    email = next(m for m in made if m.channel == "email")
    assert data["signal_id"][:8] in (sms.text or "") and sms.priority == "urgent"
    assert "14:00" in (email.text or "")  # 11:00 UTC shown in Moscow time
    # the SMS links through a short link and fits one UCS-2 segment
    assert sms.short_code and f"https://opora.test/r/{sms.short_code}" in (sms.text or "")
    assert sms.link == f"https://opora.test/signals/{data['signal_id']}"
    assert segments(sms.text or "").parts == 1


def test_the_same_event_twice_makes_no_second_message(session: Session, settings: Any) -> None:
    add_coordinator(session)
    data = signal()
    assert (
        len(domain.notify(session, settings, "ev-1", "referrals.signal.urgent", data, at(10, 9)))
        == 2
    )
    assert (
        domain.notify(session, settings, "ev-1", "referrals.signal.urgent", data, at(10, 9)) == []
    )
    assert len(session.scalars(select(Message)).all()) == 2


def referral(
    status: str, previous: str | None, urgency: str = "urgent", version: int = 1, **extra: Any
) -> dict[str, Any]:
    data = {
        "referral_id": "ref-12345678-aaaa", "measure_id": None, "family_id": "fam-1",
        "agency_id": "school-1", "service_code": "counselling", "urgency": urgency,
        "status": status, "previous_status": previous, "reason": None, "outcome": None,
        "at": at(10, 9), "by": "lead-1", "referral_version": version,
        "number": "R-2026-000001", "due_at": at(14, 9),
    }  # fmt: skip
    data.update(extra)
    return data


def test_a_requested_referral_reaches_the_agency_with_a_signed_link_when_it_has_no_account(
    session: Session, settings: Any
) -> None:
    readmodels.remember_agencies(
        session, [event("referrals.agency.created", agency(1, delivery="link"))]
    )
    data = referral("requested", None)
    readmodels.remember_referral(session, data)
    made = domain.notify(
        session, settings, "ev-r", "referrals.referral.status_changed", data, at(10, 9)
    )
    assert sorted(m.channel for m in made) == ["email", "sms"]
    email = next(m for m in made if m.channel == "email")
    assert "R-2026-000001" in (email.subject or "")
    # stored with a marker; the signed link is sealed apart and goes back in at delivery only
    assert "token=" not in (email.text or "") + (email.html or "")
    assert capabilities.MARKER in (email.text or "")
    delivered = capabilities.restore(email.text, capabilities.unseal(settings, email.sealed_links))
    assert "https://opora.test/referrals/ref-12345678-aaaa/respond?token=" in (delivered or "")
    # the SMS carries the signed link too, shortened: one segment, /r/ redirects to it
    sms = next(m for m in made if m.channel == "sms")
    assert (sms.text or "").endswith(capabilities.MARKER) and "/r/" not in (sms.text or "")
    sealed = capabilities.unseal(settings, sms.sealed_links)
    assert sealed is not None and (sealed.target or "").startswith(
        "https://opora.test/referrals/ref-12345678-aaaa/respond?token="
    )
    assert sms.link == "https://opora.test/referrals/ref-12345678-aaaa"
    delivered = capabilities.restore(sms.text, sealed) or ""
    assert delivered.endswith(f"https://opora.test/r/{sms.short_code}")
    assert segments(delivered).parts == 1


def test_an_agency_without_a_system_gets_even_a_routine_referral_by_sms(
    session: Session, settings: Any
) -> None:
    readmodels.remember_agencies(
        session, [event("referrals.agency.created", agency(1, delivery="link"))]
    )
    data = referral("requested", None, urgency="routine")
    readmodels.remember_referral(session, data)
    made = domain.notify(
        session, settings, "ev-r", "referrals.referral.status_changed", data, at(10, 9)
    )
    assert sorted((m.channel, m.priority) for m in made) == [("email", "normal"), ("sms", "normal")]


def test_a_routine_referral_is_email_only_and_later_steps_tell_the_sender(
    session: Session, settings: Any
) -> None:
    readmodels.remember_agencies(session, [event("referrals.agency.created", agency(1))])
    session.add(
        Recipient(
            person_id="lead-1",
            roles=["lead_specialist"],
            districts=[],
            email="lead@x.test",
            active=True,
        )
    )
    requested = referral("requested", None, urgency="routine")
    readmodels.remember_referral(session, requested)
    made = domain.notify(
        session, settings, "ev-1", "referrals.referral.status_changed", requested, at(10, 9)
    )
    assert [(m.recipient_id, m.channel) for m in made] == [("staff-1", "email")]
    accepted = referral("accepted", "requested", urgency="routine", version=2, by="staff-1")
    readmodels.remember_referral(session, accepted)
    made = domain.notify(
        session, settings, "ev-2", "referrals.referral.status_changed", accepted, at(10, 10)
    )
    assert [(m.recipient_id, m.channel, m.priority) for m in made] == [
        ("lead-1", "email", "digest")
    ]


def test_raid_invitation_carries_the_ics_and_the_persons_time(
    session: Session, settings: Any
) -> None:
    preferences.save_own(session, "staff-1", {"timezone": VLAD, "language": "en"})
    data = {
        "raid_id": "raid-1", "participant_id": "p-1", "person_id": "staff-1", "agency_id": "school-1",
        "agency_kind": "school", "role": "teacher", "coordinator_id": "coord-1",
        "raid_url": "https://opora.test/raids/raid-1", "sequence": 0,
        "ics": "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n",
        "ics_url": "https://opora.test/raids/raid-1.ics", "email": "teacher@school.test",
        "title": "Рейд", "starts_at": at(12, 6), "ends_at": at(12, 12), "timezone": MSK,
        "replaces_participant_id": None,
    }  # fmt: skip
    [message] = domain.notify(
        session, settings, "ev-i", "raids.participant.invited", data, at(10, 9)
    )
    assert message.address == "teacher@school.test" and message.language == "en"
    assert message.attachments and message.attachments[0]["text"].startswith("BEGIN:VCALENDAR")
    assert "16:00" in (message.text or "")  # 06:00 UTC in Vladivostok


def test_raid_reminder_is_made_once_the_day_before(session: Session, settings: Any) -> None:
    readmodels.remember_raid(
        session,
        event("raids.raid.scheduled", {
            "raid_id": "raid-1", "title": "Рейд", "purpose": "planned_check", "district": "Тарногский район",
            "starts_at": at(12, 7), "ends_at": at(12, 12), "timezone": MSK, "coordinator_id": "coord-1",
            "raid_url": "https://opora.test/raids/raid-1", "family_ids": [], "series_id": None,
            "participants": [{"participant_id": "p-1", "person_id": "coord-1", "agency_id": "a",
                              "email": None, "state": "confirmed"}],
        }),
    )  # fmt: skip
    add_coordinator(session)
    assert reminders.raid_reminders(session, settings, at(10, 9)) == 0  # two days before
    evening = at(11, 18)  # 21:00 Moscow, the day before: the SMS waits for the morning
    assert reminders.raid_reminders(session, settings, evening) == 2
    assert reminders.raid_reminders(session, settings, at(11, 19)) == 0
    sms = session.scalars(select(Message).where(Message.channel == "sms")).one()
    assert (sms.state, sms.held_until, sms.source_event_id) == (
        "held",
        at(12, 5),
        "reminder:raid:raid-1:2026-03-12",
    )


def test_measure_reminders_due_soon_then_overdue_each_once(session: Session, settings: Any) -> None:
    session.add(KnownCase(case_id="case-123456789", family_id="f", family_number="F-1", district="d",
                          lead_person_id="coord-1", updated_at=at(1, 0)))  # fmt: skip
    session.add(KnownMeasure(measure_id="m-1", case_id="case-123456789", family_number="F-1", kind="visit",
                             deadline=dt.date(2026, 3, 11), status="planned", measure_version=1))  # fmt: skip
    add_coordinator(session)
    assert reminders.measure_reminders(session, settings, at(10, 9)) == 1
    assert reminders.measure_reminders(session, settings, at(10, 10)) == 0
    assert reminders.measure_reminders(session, settings, at(13, 9)) == 1
    keys = sorted(session.scalars(select(Message.source_event_id)).all())
    assert keys == [
        "reminder:measure:m-1:due_soon:2026-03-11",
        "reminder:measure:m-1:overdue:2026-03-11",
    ]


def test_digest_collects_held_emails_at_the_persons_digest_hour(
    session: Session, settings: Any
) -> None:
    add_coordinator(session)
    preferences.save_own(session, "coord-1", {"digest": True, "digest_hour": "08:00"})
    family = {
        "family_id": "fam-1", "number": "F-000123", "category": "risk_group", "display_name": "x",
        "children_count": 1, "family_version": 1,
        "address": {"region": "r", "district": "Тарногский район", "settlement": "s"},
    }  # fmt: skip
    [held] = domain.notify(
        session, settings, "ev-f", "registry.family.registered", family, at(10, 9)
    )
    assert (held.state, held.hold_reason) == ("held", "digest")
    assert digests.send_digests(session, at(11, 4)) == 0  # 07:00 Moscow: not yet
    assert digests.send_digests(session, at(11, 5, 1)) == 1
    assert digests.send_digests(session, at(11, 6)) == 0
    digest = session.scalars(select(Message).where(Message.template_key == "digest")).one()
    assert digest.state == "queued" and "F-000123" in (digest.text or "")
    assert held.state == "delivered" and held.digest_id == digest.id
    last = session.scalars(
        select(MessageHistory)
        .where(MessageHistory.message_id == held.id)
        .order_by(MessageHistory.id.desc())
    ).first()
    assert last is not None and (last.provider, last.detail) == (
        "digest",
        f"included in digest {digest.id}",
    )


def test_retention_purges_bodies_but_keeps_status_and_history(
    session: Session, settings: Any
) -> None:
    add_coordinator(session)
    made = domain.notify(session, settings, "ev-1", "referrals.signal.urgent", signal(), at(1, 9))
    fresh = domain.notify(session, settings, "ev-2", "referrals.signal.urgent", signal(), at(9, 9))
    assert delivery.purge_bodies(session, at(10, 9), 7) == len(made)
    session.expire_all()
    for message in made:
        assert (message.subject, message.text, message.html, message.body_purged) == (
            None,
            None,
            None,
            True,
        )
        assert (message.link, message.short_code) == (None, None)  # the SMS's /r/ link expires
        assert message.state == "queued"
        assert delivery.history_of(session, message.id)
    assert all(m.text for m in fresh)


def test_every_rule_names_a_known_template_and_channel() -> None:
    from services.notifications.templates import TEMPLATES

    for rule in rules.RULES:
        assert rule.template in TEMPLATES, rule.name
        assert rule.priority in ("urgent", "normal", "digest")
        assert set(rule.channels) <= set(TEMPLATES[rule.template].channels) | {"sms"}
    listed = {r["name"] for r in rules.describe_all()}
    assert {"raid-reminder", "signal-urgent", "referral-received"} <= listed
