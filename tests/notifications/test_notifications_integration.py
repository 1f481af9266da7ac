"""The notifications core against real peers: PostgreSQL and RabbitMQ (``system``), an aiosmtpd
server, an SMPP centre and an HTTP SMS gateway written in the tests (``peers.py``); one test in
the embedded mode (SQLite, file transport, test-mode providers)."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

import pytest
from conftest import System, family_payload, publish_event
from sqlalchemy import select

from services.notifications import delivery, digests, preferences, receipts
from services.notifications.channels import parse_sms_provider
from services.notifications.channels.http_gateway import HttpGatewayProvider
from services.notifications.models import Message, MessageHistory, Recipient
from shared.config import SmtpSettings
from shared.worker import JobContext

from .peers import HttpGatewayPeer, SmppPeer, SmtpPeer, wait_until

pytestmark = pytest.mark.integration

DISTRICT = "Тарногский район"
ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Opora//raids//RU\r\nMETHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\nUID:raid-1@opora\r\nSEQUENCE:0\r\nDTSTAMP:20260301T090000Z\r\n"
    "DTSTART:20260312T070000Z\r\nDTEND:20260312T120000Z\r\nSUMMARY:Рейд\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def future(hours: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)


def smtp_ctx(system: System, peer: SmtpPeer) -> JobContext:
    worker = system.worker("notifications")
    smtp = SmtpSettings(peer.host, peer.port, None, None, False, "opora@opora.test")
    return JobContext(worker.settings.replace(smtp=smtp), worker.sessions, worker.tables)


def smpp(peer: SmppPeer, name: str, tmp: Any) -> Any:
    return parse_sms_provider(
        f"smpp://opora:secret@{peer.host}:{peer.port}?source=Opora&name={name}", tmp / "sms"
    )


def add_staff(system: System, person_id: str = "coord-1", **extra: Any) -> None:
    values = {
        "roles": ["coordinator"], "districts": [DISTRICT], "email": f"{person_id}@district.test",
        "phone": "+79110000001", "active": True,
    }  # fmt: skip
    values.update(extra)
    with system.session("notifications") as session, session.begin():
        session.add(Recipient(person_id=person_id, **values))


def messages(system: System, **where: Any) -> list[Message]:
    with system.session("notifications") as session:
        query = select(Message).order_by(Message.created_at, Message.channel)
        for key, value in where.items():
            query = query.where(getattr(Message, key) == value)
        return list(session.scalars(query))


def history(
    system: System, message_id: str
) -> list[tuple[str | None, str, str | None, str | None]]:
    with system.session("notifications") as session:
        rows = session.scalars(
            select(MessageHistory)
            .where(MessageHistory.message_id == message_id)
            .order_by(MessageHistory.id)
        )
        return [(r.from_state, r.to_state, r.provider, r.detail) for r in rows]


def invited(person_id: str = "staff-1", email: str = "teacher@school.test") -> dict[str, Any]:
    return {
        "raid_id": "raid-1", "participant_id": "p-1", "person_id": person_id, "agency_id": "school-1",
        "agency_kind": "school", "role": "teacher", "coordinator_id": "coord-1",
        "raid_url": "https://opora.test/raids/raid-1", "sequence": 0, "ics": ICS,
        "ics_url": "https://opora.test/raids/raid-1.ics", "email": email, "title": "Рейд «Семья»",
        "starts_at": iso(future(50)), "ends_at": iso(future(55)), "timezone": "Europe/Moscow",
        "replaces_participant_id": None,
    }  # fmt: skip


def urgent_signal() -> dict[str, Any]:
    return {
        "signal_id": str(uuid.uuid4()), "district": DISTRICT, "priority": "red",
        "reporter_agency_id": None, "triage_due_at": iso(future(2)),
    }  # fmt: skip


def test_an_invitation_reaches_the_smtp_server_with_its_ics_over_one_connection(
    system: System, smtp_server: SmtpPeer
) -> None:
    for n in range(3):
        publish_event(
            system, "raids.participant.invited", invited(f"staff-{n}", f"t{n}@school.test")
        )
    system.consume("notifications")
    assert delivery.deliver_queued(smtp_ctx(system, smtp_server)) == 3
    assert wait_until(lambda: len(smtp_server.messages()) == 3)
    assert smtp_server.connections == 1  # one SMTP session for the run
    mail = next(m for m in smtp_server.messages() if m["To"] == "t0@school.test")
    [ics] = [part for part in mail.iter_attachments() if part.get_content_type() == "text/calendar"]
    assert "UID:raid-1@opora" in ics.get_content()
    [message] = messages(system, address="t0@school.test")
    assert (message.state, message.provider) == ("sent", "smtp")
    assert [h[:2] for h in history(system, message.id)] == [
        (None, "queued"),
        ("queued", "sending"),
        ("sending", "sent"),
    ]


def test_sms_to_the_smpp_centre_is_delivered_on_its_receipt(
    system: System, smpp_server: SmppPeer, tmp_path: Any
) -> None:
    add_staff(system)
    publish_event(system, "referrals.signal.urgent", urgent_signal())
    system.consume("notifications")
    ctx = system.worker("notifications").job_context
    pool = delivery.SmsPool([smpp(smpp_server, "smpp-a", tmp_path)])
    try:
        delivery.deliver_queued(ctx, sms=pool, email_sender=_NullEmail())
        assert wait_until(lambda: len(smpp_server.messages) == 1)
        assert smpp_server.messages[0].destination.endswith("79110000001")
        assert wait_until(
            lambda: (
                receipts.poll_receipts(ctx, pool=pool) == 1 or _state(system, "sms") == "delivered"
            )
        )
    finally:
        pool.close()
    [sms] = messages(system, channel="sms")
    assert (sms.state, sms.provider) == ("delivered", "smpp-a")
    assert history(system, sms.id)[-1][:3] == ("sent", "delivered", "smpp-a")


def _state(system: System, channel: str) -> str:
    return messages(system, channel=channel)[0].state


class _NullEmail:
    """Stands in where a test looks at SMS only."""

    name = "null"

    def send(self, email: Any) -> Any:
        from services.notifications.channels.base import Sent

        return Sent(self.name, (email.message_id,))

    def close(self) -> None:
        pass


def test_failover_to_the_http_gateway_and_its_callback_marks_delivered(
    system: System, smpp_server: SmppPeer, sms_gateway: HttpGatewayPeer, tmp_path: Any
) -> None:
    add_staff(system)
    publish_event(system, "referrals.signal.urgent", urgent_signal())
    system.consume("notifications")
    ctx = system.worker("notifications").job_context
    smpp_server.fail_next(5, 0x58)  # throttled: temporary
    gateway = HttpGatewayProvider(sms_gateway.url, name="gateway")
    pool = delivery.SmsPool([smpp(smpp_server, "smpp-a", tmp_path), gateway])
    try:
        delivery.deliver_queued(ctx, sms=pool, email_sender=_NullEmail())
    finally:
        pool.close()
    [sms] = messages(system, channel="sms")
    assert (sms.state, sms.provider) == ("sent", "gateway")
    assert "failed over after smpp-a" in (history(system, sms.id)[-1][3] or "")
    assert len(sms_gateway.sends()) == 1 and smpp_server.messages == []

    client = system.app("notifications").test_client()
    admin = {"Authorization": f"Bearer {system.token('admin')}"}
    url = client.get("/receipts/gateway/url", headers=admin).get_json()["url"]
    path = url.removeprefix("https://opora.test")
    bad = client.post(
        "/receipts/gateway?token=not-a-valid-token",
        json={"id": sms.provider_message_id, "status": "delivered"},
    )
    assert bad.status_code == 401
    other = client.post(
        path.replace("/gateway?", "/smpp-a?"), json={"id": "x", "status": "delivered"}
    )
    assert other.status_code == 401  # a token for one provider opens no other
    response = client.post(path, json={"id": sms.provider_message_id, "status": "DELIVRD"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"matched": True, "message_id": sms.id, "state": "delivered"}


def test_retries_with_back_off_while_the_smtp_server_refuses(
    system: System, smtp_server: SmtpPeer
) -> None:
    publish_event(system, "raids.participant.invited", invited())
    system.consume("notifications")
    ctx = smtp_ctx(system, smtp_server)
    smtp_server.refuse_for(0.5)
    assert delivery.deliver_queued(ctx) == 1
    [message] = messages(system)
    assert (message.state, message.attempts) == ("queued", 1)
    assert message.next_attempt_at > dt.datetime.now(dt.UTC)
    assert delivery.deliver_queued(ctx) == 0  # not due yet
    time.sleep(0.6)
    assert delivery.deliver_queued(ctx, now=message.next_attempt_at) == 1
    [message] = messages(system)
    assert (message.state, message.attempts) == ("sent", 2)
    moves = [h[:2] for h in history(system, message.id)]
    assert moves == [
        (None, "queued"),
        ("queued", "sending"),
        ("sending", "queued"),
        ("queued", "sending"),
        ("sending", "sent"),
    ]
    assert len(smtp_server.messages()) == 1


def test_a_refused_recipient_is_a_bounce_and_publishes_failed(
    system: System, smtp_server: SmtpPeer
) -> None:
    publish_event(system, "raids.participant.invited", invited(email="gone@school.test"))
    system.consume("notifications")
    smtp_server.reject_recipient("gone@school.test")
    delivery.deliver_queued(smtp_ctx(system, smtp_server))
    [message] = messages(system)
    assert message.state == "bounced"
    with system.session("notifications") as session:
        outbox = system.worker("notifications").tables.outbox
        bodies = [json.loads(b) for b in session.scalars(select(outbox.c.body))]
    failed = [b for b in bodies if b["type"] == "notifications.message.failed"]
    assert failed and failed[0]["data"]["state"] == "bounced"
    assert "gone@" not in json.dumps(failed)


def test_the_same_event_delivered_twice_makes_one_message_per_channel(system: System) -> None:
    add_staff(system)
    event_id = str(uuid.uuid4())
    data = urgent_signal()
    publish_event(system, "referrals.signal.urgent", data, event_id=event_id)
    publish_event(system, "referrals.signal.urgent", data, event_id=event_id)
    system.consume("notifications")
    publish_event(system, "referrals.signal.urgent", data, event_id=event_id)
    system.consume("notifications")
    assert sorted(m.channel for m in messages(system)) == ["email", "sms"]


def test_quiet_hours_hold_a_normal_sms_until_they_end(system: System, tmp_path: Any) -> None:
    """The person's quiet hours are set around the real present; the clock of delivery is ours."""
    add_staff(system)
    now = dt.datetime.now(dt.UTC)
    local = now.astimezone(preferences.zone("Asia/Vladivostok"))
    start = (local - dt.timedelta(hours=1)).strftime("%H:%M")
    end = (local + dt.timedelta(hours=2)).strftime("%H:%M")
    with system.session("notifications") as session, session.begin():
        preferences.save_own(
            session,
            "coord-1",
            {"timezone": "Asia/Vladivostok", "quiet_hours": {"start": start, "end": end}},
        )
    escalated = {
        "referral_id": str(uuid.uuid4()), "number": "R-2026-000009", "family_id": "f-1", "agency_id": None,
        "kind": "complete", "due_at": iso(future(-72)), "days_overdue": 3,
        "escalated_at": iso(now), "district": DISTRICT,
    }  # fmt: skip
    publish_event(system, "referrals.referral.escalated", escalated)
    system.consume("notifications")
    [email, sms] = messages(system)
    assert (email.channel, email.state) == ("email", "queued")
    assert (sms.state, sms.hold_reason) == ("held", "quiet_hours")
    assert sms.held_until is not None and dt.timedelta(
        hours=1.9
    ) < sms.held_until - now < dt.timedelta(hours=2.1)
    provider = parse_sms_provider("test://recorder", tmp_path)
    pool = delivery.SmsPool([provider])
    ctx = system.worker("notifications").job_context
    delivery.deliver_queued(ctx, sms=pool, email_sender=_NullEmail())
    assert _state(system, "sms") == "held"
    delivery.deliver_queued(
        ctx, now=sms.held_until + dt.timedelta(seconds=1), sms=pool, email_sender=_NullEmail()
    )
    [sms] = messages(system, channel="sms")
    assert sms.state == "sent" and "R-2026-000009" in (sms.text or "")
    assert ("held", "queued", None, "quiet hours over") in history(system, sms.id)


def test_digest_goes_out_at_the_digest_hour_as_one_email(
    system: System, smtp_server: SmtpPeer
) -> None:
    add_staff(system)
    with system.session("notifications") as session, session.begin():
        preferences.save_own(session, "coord-1", {"digest": True, "digest_hour": "08:00"})
    for number in ("F-000001", "F-000002"):
        payload = {
            "family_id": str(uuid.uuid4()), "number": number, "category": "risk_group", "display_name": "x",
            "children_count": 1, "family_version": 1,
            "address": {"region": "r", "district": DISTRICT, "settlement": "s"},
        }  # fmt: skip
        publish_event(system, "registry.family.registered", payload)
    system.consume("notifications")
    held = messages(system)
    assert [m.state for m in held] == ["held", "held"]
    ctx = smtp_ctx(system, smtp_server)
    assert delivery.deliver_queued(ctx) == 0
    tomorrow = max(m.created_at for m in held) + dt.timedelta(days=1)
    with system.session("notifications") as session, session.begin():
        assert digests.send_digests(session, tomorrow) == 1
        assert digests.send_digests(session, tomorrow + dt.timedelta(hours=1)) == 0
    assert delivery.deliver_queued(ctx, now=tomorrow) == 1
    assert wait_until(lambda: len(smtp_server.messages()) == 1)
    body = smtp_server.messages()[0].get_body(("plain",)).get_content()
    assert "F-000001" in body and "F-000002" in body
    for message in messages(system, template_key="family.registered"):
        assert message.state == "delivered" and message.digest_id


def test_retention_purges_bodies_on_postgresql_and_keeps_the_record(system: System) -> None:
    add_staff(system)
    publish_event(system, "referrals.signal.urgent", urgent_signal())
    system.consume("notifications")
    with system.session("notifications") as session, session.begin():
        assert (
            delivery.purge_bodies(session, dt.datetime.now(dt.UTC) + dt.timedelta(days=6), 7) == 0
        )
        assert (
            delivery.purge_bodies(session, dt.datetime.now(dt.UTC) + dt.timedelta(days=8), 7) == 2
        )
    for message in messages(system):
        assert (message.subject, message.text, message.body_purged) == (None, None, True)
        assert history(system, message.id)
    response = system.client("notifications", "admin").post(
        f"/messages/{messages(system)[0].id}/resend", json={"reason": "the person asked"}
    )
    assert response.status_code == 409


def test_no_family_name_or_address_in_any_subject_or_sms_across_a_scenario(
    system: System, tmp_path: Any
) -> None:
    add_staff(system)
    payload = family_payload("Жуковская")
    payload["address"]["street"] = "ул. Заозёрная"
    response = system.client("registry").post("/families", json=payload)
    assert response.status_code == 201
    family = response.get_json()
    system.relay("registry")
    publish_event(system, "referrals.signal.urgent", urgent_signal())
    publish_event(system, "raids.concern.raised", {
        "visit_id": "v-1", "raid_id": "raid-1", "family_id": family["id"], "family_number": family["number"],
        "district": DISTRICT, "coordinator_id": "coord-1", "raised_by": "staff-1", "raised_at": iso(future(0)),
        "visit_url": "https://opora.test/raids/raid-1/visits/v-1",
    })  # fmt: skip
    publish_event(system, "registry.access.emergency_granted", {
        "grant_id": "g-1", "family_id": family["id"], "number": family["number"], "district": DISTRICT,
        "subject": "inspector-7", "agency_id": None, "expires_at": iso(future(4)),
    })  # fmt: skip
    system.consume("notifications")
    made = messages(system)
    assert {m.source_event_type for m in made} >= {
        "registry.family.registered",
        "raids.concern.raised",
        "registry.access.emergency_granted",
    }
    texts = [m.subject or "" for m in made] + [m.text or "" for m in made if m.channel == "sms"]
    assert any(family["number"] in t for t in texts)
    for secret in ("Жуковская", "Заозёрная", "1990-05-01", "01.05.1990", "Мария"):
        assert not any(secret in t for t in texts), secret


@pytest.mark.embedded
def test_embedded_mode_email_to_the_folder_and_sms_recorded_then_delivered(
    embedded_system: System,
) -> None:
    from kombu import Exchange, Producer

    system = embedded_system
    add_staff(system)
    worker = system.worker("notifications")
    envelope = {
        "id": str(uuid.uuid4()), "type": "referrals.signal.urgent", "version": 1,
        "occurred_at": iso(future(0)), "producer": "referrals", "correlation_id": "t",
        "causation_id": None, "data": urgent_signal(),
    }  # fmt: skip
    with worker.connect() as conn:
        Producer(conn.default_channel).publish(
            json.dumps(envelope), exchange=Exchange(worker.names.events, type="topic"),
            routing_key="referrals.signal.urgent", content_type="application/json",
            content_encoding="utf-8", declare=[],
        )  # fmt: skip
    system.consume("notifications")
    ctx = worker.job_context
    assert delivery.deliver_queued(ctx) == 2  # default channels: .eml folder, test-mode SMS
    assert receipts.poll_receipts(ctx) == 1
    email, sms = messages(system, channel="email")[0], messages(system, channel="sms")[0]
    assert (email.state, sms.state) == ("sent", "delivered")
    assert sms.provider == "test"
    data_dir = system.settings("notifications").data_dir
    assert len(list((data_dir / "mail").glob("*.eml"))) == 1
    recorded = [
        json.loads(line) for line in (data_dir / "sms" / "test.jsonl").read_text().splitlines()
    ]
    assert len(recorded) == 1 and envelope["data"]["signal_id"][:8] in json.dumps(
        recorded, ensure_ascii=False
    )
