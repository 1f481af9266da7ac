"""What keeps the pipeline near the raw SMTP rate (bench/NOTIFICATIONS.md): a consumer batch
costs a fixed number of queries whatever its size, the deliver job drains the queue in one
run and records emails a group at a time, and a committed message wakes the job at once.
On SQLite files, counting the statements the code sends."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from services.notifications import delivery, handlers, readmodels
from services.notifications.channels.base import Sent
from services.notifications.models import Base, Message, MessageHistory, ProviderRef, tables
from shared import db
from shared.config import load_settings
from shared.events import Event, load_all_event_types
from shared.worker import JobContext

DISTRICT = "Тарногский район"
ICS = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"


@pytest.fixture
def engine(tmp_path: Any) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'n.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ctx(engine: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> JobContext:
    settings = load_settings(
        "notifications",
        env={"OPORA_DATA_DIR": str(tmp_path), "OPORA_PUBLIC_URL": "https://opora.test"},
    )
    monkeypatch.setattr(handlers.handlers, "settings", settings)  # as the worker binds them
    sessions: sessionmaker[Session] = db.make_sessionmaker(engine)
    return JobContext(settings, sessions, tables)


def make_event(kind: str, data: dict[str, Any]) -> Event:
    loaded = load_all_event_types().get(kind, 1).schema().load(data)
    now = dt.datetime.now(dt.UTC)
    return Event(str(uuid.uuid4()), kind, 1, now, kind.split(".")[0], "t", None, loaded)


def seed_staff(ctx: JobContext, n: int) -> None:
    contacts = [
        {"person_id": f"staff-{i}", "name": "—", "role": "teacher", "email": f"s{i}@school.test",
         "phone": None, "preferences": {}, "active": True}
        for i in range(n)
    ]  # fmt: skip
    agency = make_event("referrals.agency.created", {
        "agency_id": "school-1", "name": "Школа", "kind": "school", "districts": [DISTRICT],
        "services": [], "email": None, "phone": None, "active": True, "contacts": contacts,
        "delivery": "api", "agency_version": 1,
    })  # fmt: skip
    with ctx.sessions() as session, session.begin():
        readmodels.remember_agencies(session, [agency])


def invitation(i: int) -> Event:
    starts = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    return make_event("raids.participant.invited", {
        "raid_id": f"raid-{i // 10}", "participant_id": f"p-{i}", "person_id": f"staff-{i % 40}",
        "agency_id": "school-1", "agency_kind": "school", "role": "teacher",
        "coordinator_id": "coord-1", "raid_url": f"https://opora.test/raids/raid-{i // 10}",
        "sequence": 0, "ics": ICS, "ics_url": "https://opora.test/raid.ics", "email": None,
        "title": "Рейд", "starts_at": starts.isoformat(),
        "ends_at": (starts + dt.timedelta(hours=3)).isoformat(), "timezone": "Europe/Moscow",
        "replaces_participant_id": None,
    })  # fmt: skip


def handle_batch(ctx: JobContext, events: list[Event]) -> None:
    """As the consumer's fast path does: the batch handler once, in one transaction."""
    handler = handlers.handlers.find(events[0])
    batch_handler = handlers.handlers.batch_of(handler)
    assert batch_handler is not None
    with ctx.sessions() as session, session.begin():
        batch_handler(session, events)


class Statements:
    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.count += 1


def count_messages(ctx: JobContext, **where: Any) -> int:
    with ctx.sessions() as session:
        query = select(func.count()).select_from(Message)
        for key, value in where.items():
            query = query.where(getattr(Message, key) == value)
        return session.scalar(query) or 0


def test_a_batch_costs_the_same_queries_for_ten_events_or_a_hundred(
    ctx: JobContext, engine: Engine
) -> None:
    seed_staff(ctx, 40)
    statements = Statements(engine)
    handle_batch(ctx, [invitation(i) for i in range(10)])
    ten = statements.count
    handle_batch(ctx, [invitation(i) for i in range(10, 110)])
    hundred = statements.count - ten
    assert count_messages(ctx) == 110  # one email per invitation
    assert hundred <= ten + 2, (ten, hundred)  # not one query per event


def test_a_batch_makes_what_the_events_one_by_one_make(ctx: JobContext) -> None:
    seed_staff(ctx, 40)
    events = [invitation(i) for i in range(20)]
    handle_batch(ctx, events[:10])
    for one in events[10:]:
        handle_batch(ctx, [one])
    with ctx.sessions() as session:
        made = session.scalars(select(Message).order_by(Message.created_at)).all()
        assert sorted(m.recipient_id for m in made) == sorted(f"staff-{i % 40}" for i in range(20))
        assert all(m.state == "queued" and m.attachments for m in made)
    handle_batch(ctx, events[:10])  # redelivered: nothing new
    assert count_messages(ctx) == 20


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, email: Any) -> Sent:
        self.sent.append(email.message_id)
        return Sent(self.name, (f"<{email.message_id}@opora>",))

    def close(self) -> None:
        pass


def test_the_deliver_job_drains_the_queue_and_records_each_email_once(
    ctx: JobContext, engine: Engine
) -> None:
    seed_staff(ctx, 40)
    handle_batch(ctx, [invitation(i) for i in range(130)])  # more than one claim
    sender = Recorder()
    delivery.senders_of(ctx).email = sender
    statements = Statements(engine)
    assert delivery.deliver_due(ctx) == 130
    assert len(sender.sent) == len(set(sender.sent)) == 130
    assert count_messages(ctx, state="sent") == 130
    # outcomes written a group at a time: far fewer statements than emails
    assert statements.count < 130, statements.count
    with ctx.sessions() as session:
        histories = session.scalar(select(func.count()).select_from(MessageHistory))
        refs = session.scalar(select(func.count()).select_from(ProviderRef))
    assert (histories, refs) == (130 * 3, 130)  # queued, sending, sent


def test_a_message_sent_again_after_a_lost_claim_keeps_one_provider_ref(
    ctx: JobContext,
) -> None:
    seed_staff(ctx, 1)
    handle_batch(ctx, [invitation(0)])
    delivery.senders_of(ctx).email = Recorder()
    delivery.deliver_due(ctx)
    with ctx.sessions() as session, session.begin():  # as if the worker died before recording
        message = session.scalars(select(Message)).one()
        message.state, message.next_attempt_at = "queued", dt.datetime.now(dt.UTC)
    assert delivery.deliver_due(ctx) == 1
    with ctx.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ProviderRef)) == 1
        assert session.scalars(select(Message)).one().attempts == 2


def test_a_committed_message_wakes_the_deliver_job_and_a_rollback_does_not(
    ctx: JobContext,
) -> None:
    seed_staff(ctx, 1)
    delivery.wait_for_work(0)  # whatever an earlier test left
    with ctx.sessions() as session, session.begin():
        handlers.notify_all(session, [invitation(0)])
        assert not delivery.wait_for_work(0)  # not before the commit
    assert delivery.wait_for_work(0)
    with pytest.raises(RuntimeError), ctx.sessions() as session, session.begin():
        handlers.notify_all(session, [invitation(1)])
        raise RuntimeError("rolled back")
    assert not delivery.wait_for_work(0)


def test_the_job_sends_a_new_message_without_waiting_for_its_next_tick(
    ctx: JobContext,
) -> None:
    seed_staff(ctx, 1)
    sender = Recorder()
    delivery.senders_of(ctx).email = sender
    stop = threading.Event()

    def worker_job_loop() -> None:  # shared.worker.Worker._run_job
        job = next(j for j in handlers.jobs if j.name == "deliver")
        while not stop.is_set():
            job.run(ctx)
            stop.wait(job.every_seconds)

    thread = threading.Thread(target=worker_job_loop, daemon=True)
    thread.start()
    try:
        time.sleep(0.2)  # the job is waiting now
        started = time.monotonic()
        with ctx.sessions() as session, session.begin():
            handlers.notify_all(session, [invitation(0)])
        deadline = started + handlers.WAKE_WAIT / 2
        while not sender.sent and time.monotonic() < deadline:
            time.sleep(0.005)
        assert sender.sent, "the message waited for the job's next look"
    finally:
        stop.set()
        delivery.wait_for_work(0)
        thread.join(timeout=5)


def test_a_failing_run_still_waits_before_the_next(
    ctx: JobContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the database down the job must not spin: it waits as after a normal run."""
    monkeypatch.setattr(handlers, "WAKE_WAIT", 0.3)

    def no_database() -> Session:
        raise RuntimeError("database unavailable")

    broken = JobContext(ctx.settings, no_database, ctx.tables)  # type: ignore[arg-type]
    delivery.wait_for_work(0)
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        handlers.deliver(broken)
    assert time.monotonic() - started >= 0.25
