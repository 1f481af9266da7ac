"""What keeps creating a referral cheap (issue #4's benchmark), held as behaviour: on PostgreSQL a
create is one transaction on one connection, with no look-up of the routing rules or the agency
once they are known, its number from the year's sequence; the routing copy follows every write
of the directory; the outbox stages an event and wakes the relay in one statement."""

from __future__ import annotations

import datetime as dt
import threading
import types
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from conftest import System
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from services.referrals import directory, numbering
from services.referrals.models import Agency, Base, RoutingRule, tables
from shared import db
from shared.messaging.outbox import NOTIFY_CHANNEL, add_event, add_events

TODAY = dt.date.today()
SCHOOL = {
    "id": "school-1",
    "name": "Школа",
    "kind": "school",
    "districts": ["Тарнога"],
    "services": ["truancy_work"],
}
REFERRAL = {
    "family_id": "fam-1",
    "family_number": "Т-001",
    "district": "Тарнога",
    "service_code": "truancy_work",
    "reason": "пропуски занятий",
    "contact": {"person_id": "spec-1"},
}


def seed(system: System) -> None:
    now = dt.datetime.now(dt.UTC)
    with system.session("referrals") as session, session.begin():
        directory.create_agency(session, SCHOOL, now)
        directory.create_agency(session, {**SCHOOL, "id": "school-2"}, now)
        directory.add_rule(
            session,
            {"service_code": "truancy_work", "district": "*", "agency_id": "school-1"},
            "admin",
            now,
        )
        directory.remember_agreement(
            session,
            {
                "agreement_id": "agr-1",
                "case_id": "case-1",
                "family_id": "fam-1",
                "signed_on": TODAY - dt.timedelta(days=1),
                "valid_until": TODAY + dt.timedelta(days=90),
                "consent_data_processing": True,
                "share_with": ["school"],
            },
        )


def lead(system: System) -> Any:
    client = system.app("referrals").test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token('lead_specialist')}"
    return client


def create(client: Any, **extra: Any) -> Any:
    response = client.post(
        "/referrals", json={**REFERRAL, **extra}, headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


class Statements:
    """What one engine sends: statements, connections taken from the pool, commits."""

    def __init__(self, engine: sa.Engine) -> None:
        self.sql: list[str] = []
        self.checkouts = 0
        self.commits = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine.pool, "checkout", self._checkout)
        event.listen(engine, "commit", self._commit)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sql.append(" ".join(statement.split()))

    def _checkout(self, *_: Any) -> None:
        self.checkouts += 1

    def _commit(self, _conn: Any) -> None:
        self.commits += 1

    def touching(self, table: str) -> list[str]:
        return [s for s in self.sql if f" {table}" in s]


@pytest.mark.integration
def test_a_create_on_postgresql_is_one_transaction_without_directory_reads(system: System) -> None:
    seed(system)
    client = lead(system)
    create(client)  # the process learns the routing rules and agencies
    seen = Statements(system.worker("referrals").engine)
    created = create(client)
    assert created["status"] == "requested" and created["agency_id"] == "school-1"
    assert seen.checkouts == 1 and seen.commits == 1
    assert seen.touching("routing_rules") == [] and seen.touching("agencies") == []
    assert seen.touching("referral_counters") == []
    assert any(s.startswith("SELECT nextval('referral_number_") for s in seen.sql)
    assert len(seen.touching("referral_status_changes")) == 1  # one step: null -> requested
    [outbox] = seen.touching("outbox")
    assert "pg_notify" in outbox  # the relay's wake-up rides on the event's row
    assert [s.split()[0] for s in seen.touching("idempotency_keys")] == ["INSERT", "UPDATE"]


@pytest.mark.integration
def test_routing_follows_directory_writes_of_this_process_at_once(system: System) -> None:
    seed(system)
    client = lead(system)
    assert create(client)["agency_id"] == "school-1"
    admin = system.app("referrals").test_client()
    admin.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token('admin')}"
    rule = {"service_code": "truancy_work", "district": "Тарнога", "agency_id": "school-2"}
    assert admin.put("/routing-rules", json=rule).status_code == 200
    assert create(client)["agency_id"] == "school-2"  # the district's rule wins, at once

    with system.session("referrals") as session, session.begin():
        session.get(Agency, "school-2").active = False  # type: ignore[union-attr]
    refused = client.post("/referrals", json=REFERRAL)
    assert refused.status_code == 422 and "inactive" in refused.get_json()["detail"]

    with system.session("referrals") as session, session.begin():
        for rule_row in session.scalars(select(RoutingRule)):
            session.delete(rule_row)
    unrouted = client.post("/referrals", json=REFERRAL)
    assert unrouted.status_code == 422 and "no agency" in unrouted.get_json()["detail"]


@pytest.mark.integration
def test_another_process_change_is_seen_once_the_copy_is_older_than_the_ttl(
    system: System, pg_databases: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(system)
    clock = [1000.0]
    monkeypatch.setattr(directory, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    client = lead(system)
    assert create(client)["agency_id"] == "school-1"
    elsewhere = db.make_engine(pg_databases["referrals"])  # as another gunicorn worker would
    try:
        with Session(elsewhere) as session, session.begin():
            session.scalars(select(RoutingRule)).one().agency_id = "school-2"
    finally:
        elsewhere.dispose()
    assert create(client)["agency_id"] == "school-1"  # within the TTL: the copy
    clock[0] += directory.ROUTES_TTL_SECONDS + 1
    assert create(client)["agency_id"] == "school-2"


def test_a_session_that_wrote_the_directory_routes_by_what_it_wrote() -> None:
    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as session:
        directory.create_agency(session, SCHOOL, now)
        directory.add_rule(
            session,
            {"service_code": "truancy_work", "district": "*", "agency_id": "school-1"},
            "admin",
            now,
        )
        routed = directory.route(session, "truancy_work", "Тарнога")
        assert routed is not None and routed.id == "school-1"
        session.rollback()
        assert directory.route(session, "truancy_work", "Тарнога") is None
    engine.dispose()


# --- numbers -----------------------------------------------------------------------------------


@pytest.fixture
def fresh_referrals_db(postgres_admin_url: str) -> Iterator[str]:
    name = f"opora_test_numbers_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.integration
def test_numbers_continue_from_the_counters_across_the_upgrade_and_back(
    fresh_referrals_db: str,
) -> None:
    url = fresh_referrals_db
    db.upgrade("referrals", url, "0007_number_sequences-1")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO referral_counters (year, last) VALUES (2025, 41)"))
    db.upgrade("referrals", url)
    with engine.begin() as conn:  # an old process numbered 2027 before this one did
        conn.execute(sa.text("INSERT INTO referral_counters (year, last) VALUES (2027, 7)"))
    at = {year: dt.datetime(year, 6, 1, tzinfo=dt.UTC) for year in (2025, 2026, 2027)}
    with Session(engine) as session, session.begin():
        assert numbering.next_number(session, at[2025]) == "R-2025-000042"
        assert numbering.next_number(session, at[2026]) == "R-2026-000001"
        assert numbering.next_number(session, at[2027]) == "R-2027-000008"
        assert numbering.next_number(session, at[2025]) == "R-2025-000043"
    with Session(engine) as session, session.begin():
        numbering.next_number(session, at[2026])
        session.rollback()  # a create that rolls back leaves a gap, never a repeat
    with Session(engine) as session, session.begin():
        assert numbering.next_number(session, at[2026]) == "R-2026-000003"
    engine.dispose()

    command.downgrade(db.alembic_config("referrals", url), "0007_number_sequences-1")
    engine = db.make_engine(url)
    with engine.connect() as conn:
        counters = dict(conn.execute(sa.text("SELECT year, last FROM referral_counters")).all())
        sequences = conn.execute(
            sa.text("SELECT count(*) FROM pg_sequences WHERE sequencename LIKE 'referral_number%'")
        ).scalar_one()
    engine.dispose()
    assert counters == {2025: 43, 2026: 3, 2027: 8} and sequences == 0


@pytest.mark.integration
def test_numbers_stay_unique_when_processes_meet_a_new_year_together(
    pg_databases: dict[str, str],
) -> None:
    engines = [db.make_engine(pg_databases["referrals"]) for _ in range(4)]  # four processes
    year = dt.datetime(2093, 1, 1, tzinfo=dt.UTC)
    got: list[str] = []
    start = threading.Barrier(len(engines))

    def take(engine: sa.Engine) -> None:
        start.wait()
        for _ in range(5):
            with Session(engine) as session, session.begin():
                got.append(numbering.next_number(session, year))

    threads = [threading.Thread(target=take, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for engine in engines:
        engine.dispose()
    assert sorted(got) == [f"R-2093-{n:06d}" for n in range(1, 21)]


# --- the outbox --------------------------------------------------------------------------------

CLAIMED = {
    "referral_id": "r-1",
    "agency_id": "school-1",
    "owner_id": "teacher-1",
    "at": "2026-03-02T09:00:00+00:00",
    "referral_version": 2,
}


@pytest.mark.integration
def test_one_event_is_one_statement_that_also_wakes_the_relay_at_commit_only(
    pg_databases: dict[str, str],
) -> None:
    url = pg_databases["referrals"]
    engine = db.make_engine(url)
    raw = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    seen = Statements(engine)
    with psycopg.connect(raw, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        with Session(engine) as session, session.begin():
            add_event(session, tables, "referrals.referral.claimed", CLAIMED, producer="referrals")
            add_event(session, tables, "referrals.referral.claimed", CLAIMED, producer="referrals")
        assert len(list(listener.notifies(timeout=2, stop_after=1))) == 1
        with Session(engine) as session, session.begin():
            add_event(session, tables, "referrals.referral.claimed", CLAIMED, producer="referrals")
            session.rollback()
        assert list(listener.notifies(timeout=0.5)) == []
        with Session(engine) as session, session.begin():
            add_events(
                session, tables, [("referrals.referral.claimed", CLAIMED)] * 3, producer="referrals"
            )
        assert len(list(listener.notifies(timeout=2, stop_after=1))) == 1
    outbox = seen.touching("outbox")
    assert len(outbox) == 4 and ["pg_notify" in s for s in outbox] == [True, False, True, False]
    with engine.connect() as conn:
        rows = conn.execute(select(tables.outbox.c.event_type)).scalars().all()
    engine.dispose()
    assert rows.count("referrals.referral.claimed") >= 5


def test_events_staged_together_are_one_insert_on_sqlite() -> None:
    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    seen = Statements(engine)
    with Session(engine) as session, session.begin():
        envelopes = add_events(
            session, tables, [("referrals.referral.claimed", CLAIMED)] * 3, producer="referrals"
        )
    assert len(seen.touching("outbox")) == 1
    with engine.connect() as conn:
        ids = conn.execute(select(tables.outbox.c.event_id)).scalars().all()
    engine.dispose()
    assert sorted(ids) == sorted(e["id"] for e in envelopes)
