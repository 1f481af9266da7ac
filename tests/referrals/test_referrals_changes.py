"""The ``/referrals/changes`` feed cannot skip a change: a transaction that wrote before a poll
and commits after it is returned by the next poll (real PostgreSQL, two connections; SQLite with
its one writer), pages follow each other without gaps or repeats, and cursors of the former
time-based feed answer 400 naming ``since``."""

from __future__ import annotations

import base64
import datetime as dt
import time
from typing import Any

import pytest
from conftest import System
from sqlalchemy import text
from test_referrals_api import consent

from services.referrals import changes, directory, domain
from services.referrals.models import Referral
from shared import db

AGENCY = {
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
    "agency_id": "school-1",
    "reason": "пропуски занятий",
    "contact": {"person_id": "spec-1"},
}
SPECIALIST = domain.Actor(
    "spec-1", None, sender=True, agency_member=False, may_override_consent=False
)


def coordinator(system: System) -> Any:
    return system.client("referrals", "coordinator")


def send_referrals(system: System, count: int) -> list[str]:
    with system.session("referrals") as session, session.begin():
        directory.create_agency(session, AGENCY, dt.datetime.now(dt.UTC))
    consent(system)
    client = coordinator(system)
    ids = []
    for _ in range(count):
        created = client.post("/referrals", json=REFERRAL)
        assert created.status_code == 201, created.get_json()
        ids.append(created.get_json()["id"])
    return ids


def poll(client: Any, since: str | None, limit: int = 100) -> tuple[list[str], str]:
    query = {"limit": limit} | ({"since": since} if since else {})
    answer = client.get("/referrals/changes", query_string=query)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    return [item["id"] for item in body["items"]], body["next_cursor"]


def poll_until(client: Any, since: str | None, wanted: set[str]) -> tuple[list[str], str]:
    """Poll as an agency system does until ``wanted`` came: on a shared PostgreSQL another
    client's open transaction may hold the horizon back for a moment (delayed, never lost)."""
    seen: list[str] = []
    cursor = since
    deadline = time.monotonic() + 30
    while not wanted <= set(seen):
        assert time.monotonic() < deadline, f"{wanted - set(seen)} never came"
        page, cursor = poll(client, cursor)
        seen += page
        if not page:
            time.sleep(0.05)
    assert cursor is not None
    return seen, cursor


def comment_on(session: Any, referral_id: str, at: dt.datetime) -> None:
    """A comment by the sender, as the API would write it (the referral row is updated)."""
    referral = session.get(Referral, referral_id, with_for_update=True)
    domain.add_comment(session, SPECIALIST, referral, "позвоните", at)


def _late_commit_is_not_skipped(system: System) -> None:
    """A writes first (earlier time, smaller transaction id) but commits after B and after a poll
    that sees B's commit: the next poll returns A's change. The former ``(updated_at, id)``
    cursor had passed A's time and lost it for ever."""
    first, slow, fast = send_referrals(system, 3)
    client = coordinator(system)
    seen, cursor = poll_until(client, None, {first, slow, fast})
    assert seen == [first, slow, fast]
    postgres = system.db_urls["referrals"].startswith("postgresql")
    now = dt.datetime.now(dt.UTC)

    slow_session = system.session("referrals")
    try:
        with slow_session.begin():
            comment_on(slow_session, slow, now - dt.timedelta(seconds=5))
            slow_session.flush()  # written, not committed
            if postgres:  # SQLite has one writer at a time: B would wait for A
                with system.session("referrals") as session, session.begin():
                    comment_on(session, fast, now)
            during, cursor = poll(client, cursor)
            assert slow not in during
    finally:
        slow_session.close()

    after, cursor = poll_until(client, cursor, {slow, fast} - set(during) if postgres else {slow})
    assert sorted(during + after) == sorted({slow, fast} if postgres else {slow})
    assert poll(client, cursor)[0] == []


@pytest.mark.integration
def test_a_change_committed_after_a_poll_is_in_the_next_poll_on_postgresql(system: System) -> None:
    _late_commit_is_not_skipped(system)


@pytest.mark.embedded
def test_a_change_committed_after_a_poll_is_in_the_next_poll_on_sqlite(
    embedded_system: System,
) -> None:
    _late_commit_is_not_skipped(embedded_system)


@pytest.mark.embedded
def test_pages_follow_each_other_without_gaps_or_repeats(embedded_system: System) -> None:
    ids = send_referrals(embedded_system, 5)
    client = coordinator(embedded_system)
    pages, cursor = [], None
    while True:
        page, cursor = poll(client, cursor, limit=2)
        if not page:
            break
        pages.append(page)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [i for page in pages for i in page] == ids  # oldest change first
    moved = client.post(f"/referrals/{ids[0]}/comments", json={"body": "есть новости?"})
    assert moved.status_code == 201
    assert poll(client, cursor)[0] == [ids[0]]  # changed again: back in the feed, once


@pytest.mark.embedded
def test_a_cursor_of_the_former_feed_answers_400_naming_since(embedded_system: System) -> None:
    [referral_id] = send_referrals(embedded_system, 1)
    client = coordinator(embedded_system)
    former = base64.urlsafe_b64encode(
        f"{dt.datetime.now(dt.UTC).isoformat()}|{referral_id}".encode()
    ).decode()
    not_a_number = base64.urlsafe_b64encode(b"c2:-1:x").decode()
    for cursor in (former.rstrip("="), "garbage!", not_a_number):
        answer = client.get("/referrals/changes", query_string={"since": cursor})
        assert answer.status_code == 400, cursor
        assert answer.mimetype == "application/problem+json"
        assert "since" in answer.get_json()["errors"]
    refused = client.get("/referrals/changes", query_string={"since": former}).get_json()
    assert "without 'since'" in refused["errors"]["since"][0]


@pytest.mark.integration
def test_a_long_transaction_in_another_database_does_not_hold_the_feed_back(
    system: System,
) -> None:
    """Transaction ids are cluster-wide, but only writers of this database count: a referral
    sent after another database's transaction took its id comes while that transaction is
    still open (polled as an agency would: this database's own relay may hold the horizon
    for a moment; the foreign transaction would hold it until its rollback)."""
    elsewhere = db.make_engine(system.db_urls["registry"])
    try:
        with elsewhere.connect() as conn:
            conn.execute(text("SELECT pg_current_xact_id()"))  # an id, held until rollback
            [referral_id] = send_referrals(system, 1)
            assert poll_until(coordinator(system), None, {referral_id})[0] == [referral_id]
            conn.rollback()
    finally:
        elsewhere.dispose()


def test_cursors_are_opaque_and_read_back() -> None:
    position = changes.Position(2**40, "0b6f3c1e-8a55-4d0e-9b7a-1f2e3d4c5b6a")
    cursor = position.encode()
    assert position.referral_id not in cursor and "=" not in cursor
    assert changes.Position.decode(cursor) == position
    assert changes.Position.decode(changes.Position(7, "").encode()) == changes.Position(7, "")
