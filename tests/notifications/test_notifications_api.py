"""The notifications HTTP API on the embedded set-up: messages with history, resend (audited),
preferences, rules, receipts' signed URL, and clear 4xx problems for bad input."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from conftest import System
from sqlalchemy import select

from services.notifications import domain
from services.notifications.models import Recipient

pytestmark = pytest.mark.embedded

SIGNAL = {
    "signal_id": "5e1f0000-0000-4000-8000-000000000001", "district": "Тарногский район",
    "priority": "red", "reporter_agency_id": None,
    "triage_due_at": dt.datetime(2026, 3, 10, 11, tzinfo=dt.UTC),
}  # fmt: skip


def client(system: System, role: str, subject: str | None = None) -> Any:
    c = system.app("notifications").test_client()
    token = system.token(role, subject=subject or f"test-{role}")
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return c


@pytest.fixture
def made(embedded_system: System) -> list[str]:
    system = embedded_system
    with system.session("notifications") as session, session.begin():
        session.add(Recipient(person_id="coord-1", roles=["coordinator"], districts=["Тарногский район"],
                              email="c@district.test", phone="+79110000001", active=True))  # fmt: skip
        session.flush()
        messages = domain.notify(
            session,
            system.settings("notifications"),
            "ev-1",
            "referrals.signal.urgent",
            SIGNAL,
            dt.datetime.now(dt.UTC),
        )
        return [m.id for m in messages]


def test_message_status_and_history(embedded_system: System, made: list[str]) -> None:
    response = client(embedded_system, "admin").get(f"/messages/{made[0]}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["state"] == "queued" and body["priority"] == "urgent"
    assert [h["to_state"] for h in body["history"]] == ["queued"]


def test_messages_filtered_and_people_see_only_their_own(
    embedded_system: System, made: list[str]
) -> None:
    admin = client(embedded_system, "admin")
    page = admin.get("/messages?source_event_id=ev-1&channel=sms").get_json()
    assert page["total"] == 1 and page["items"][0]["channel"] == "sms"
    assert admin.get("/messages?state=sent").get_json()["total"] == 0
    staff = client(embedded_system, "agency_staff", subject="someone-else")
    assert staff.get("/messages").get_json()["total"] == 0
    assert staff.get(f"/messages/{made[0]}").status_code == 404
    assert staff.get("/messages?recipient_id=coord-1").status_code == 403
    mine = client(embedded_system, "coordinator", subject="coord-1")
    assert mine.get("/messages?recipient_id=coord-1").get_json()["total"] == 2
    bad = admin.get("/messages?state=lost")
    assert bad.status_code == 422 and "state" in str(bad.get_json())


def test_resend_makes_a_linked_message_and_an_audit_entry(
    embedded_system: System, made: list[str]
) -> None:
    admin = client(embedded_system, "admin")
    response = admin.post(f"/messages/{made[0]}/resend", json={"reason": "the phone was off"})
    assert response.status_code == 201, response.get_json()
    copy = response.get_json()
    assert copy["resend_of"] == made[0] and copy["state"] == "queued" and copy["id"] != made[0]
    again = admin.post(f"/messages/{made[0]}/resend", json={"reason": "once more"})
    assert again.get_json()["source_event_id"].endswith(":2")
    assert (
        client(embedded_system, "coordinator")
        .post(f"/messages/{made[0]}/resend", json={"reason": "x" * 5})
        .status_code
        == 403
    )
    assert admin.post(f"/messages/{made[0]}/resend", json={}).status_code == 422
    audit = embedded_system.worker("notifications").tables.audit_log
    with embedded_system.session("notifications") as session:
        rows = session.execute(select(audit.c.entity, audit.c.entity_id, audit.c.reason)).all()
    assert ("message", copy["id"], "the phone was off") in rows


def test_preferences_of_my_own_and_for_admins(embedded_system: System) -> None:
    me = client(embedded_system, "agency_staff", subject="staff-1")
    start = me.get("/preferences/me").get_json()
    assert start["source"] == "default" and start["quiet_hours"] == {
        "start": "21:00",
        "end": "08:00",
    }
    response = me.put(
        "/preferences/me",
        json={"sms": False, "timezone": "Asia/Vladivostok", "digest": True, "digest_hour": "07:30",
              "quiet_hours": None, "language": "en"},
    )  # fmt: skip
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (
        body["sms"],
        body["timezone"],
        body["digest_hour"],
        body["quiet_hours"],
        body["source"],
    ) == (
        False,
        "Asia/Vladivostok",
        "07:30",
        None,
        "self",
    )
    assert (
        client(embedded_system, "admin").get("/preferences/staff-1").get_json()["language"] == "en"
    )
    assert me.get("/preferences/staff-2").status_code == 403
    for bad in ({"timezone": "Mars/Olympus"}, {"digest_hour": "25:99"}, {"language": "fr"}, {}):
        answer = me.put("/preferences/me", json=bad)
        assert answer.status_code == 422, bad
        assert answer.content_type.startswith("application/problem+json")


def test_rules_are_listed_for_admins(embedded_system: System) -> None:
    rules = client(embedded_system, "admin").get("/rules").get_json()["rules"]
    by_name = {r["name"]: r for r in rules}
    assert (
        by_name["signal-urgent"]["channels"] == ["email", "sms"]
        and by_name["signal-urgent"]["priority"] == "urgent"
    )
    assert "raid-reminder" in by_name
    assert client(embedded_system, "agency_staff").get("/rules").status_code == 403


def test_receipt_url_is_signed_and_a_bad_body_is_a_clear_422(embedded_system: System) -> None:
    admin = client(embedded_system, "admin")
    url = admin.get("/receipts/gateway/url").get_json()["url"]
    assert url.startswith("https://opora.test/receipts/gateway?token=")
    anonymous = embedded_system.app("notifications").test_client()
    path = url.removeprefix("https://opora.test")
    assert anonymous.post(path, json={"status": "delivered"}).status_code == 422
    unknown = anonymous.post(path, json={"id": "nobody", "status": "delivered"})
    assert unknown.status_code == 200 and unknown.get_json()["matched"] is False
    assert (
        anonymous.post(path, json={"id": "nobody", "status": "enroute"}).get_json()["matched"]
        is False
    )
    assert (
        anonymous.post("/receipts/gateway", json={"id": "x", "status": "delivered"}).status_code
        == 422
    )
