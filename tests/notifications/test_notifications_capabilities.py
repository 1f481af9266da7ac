"""A capability link reaches only its recipient (issue 12, point 2): a charity's signed answer
link and the SMS's short link to it are in no API view of the message, whoever reads it (the
recipient too: they read it where it was delivered); they reach the real SMTP server and SMPP
centre of ``peers.py``; a resend issues fresh ones, ends the old short link, and referrals then
refuses the replaced answer link; the retention purge takes them with the bodies. Each on the
embedded set-up (SQLite, the file transport) and on the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from typing import Any

import pytest
from conftest import System
from sqlalchemy import select

from services.notifications import capabilities, delivery, domain, readmodels
from services.notifications.channels import parse_sms_provider
from services.notifications.models import Message
from services.referrals import directory
from shared.auth.links import check_link_token
from shared.config import SmtpSettings
from shared.events import Event
from shared.worker import JobContext

from .peers import SmppPeer, SmtpPeer, wait_until

REFERRAL_ID = "ref-5e1f0000-0000-4000-8000-00000000000a"
# 12:00 in Moscow: outside the default quiet hours, whenever the test runs
NOON = dt.datetime.now(dt.UTC).replace(hour=9, minute=0, second=0, microsecond=0)
SIGNED = re.compile(r"https://opora\.test/referrals/[\w-]+/respond\?token=[\w.\-]+")
SHORT = re.compile(r"https://opora\.test/r/\w+")


def client(system: System, role: str, subject: str | None = None) -> Any:
    c = system.app("notifications").test_client()
    token = system.token(role, subject=subject or f"test-{role}")
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return c


def charity_event() -> Event:
    data = {
        "agency_id": "charity-1", "name": "Добрые руки", "kind": "charity",
        "districts": ["Тарногский район"], "services": [], "email": None, "phone": None,
        "active": True, "agency_version": 1, "delivery": "link",
        "contacts": [{
            "person_id": "volunteer-1", "name": "Волонтёр", "role": "head",
            "email": "volunteer@charity.test", "phone": "+79110000005", "preferences": {},
            "active": True,
        }],
    }  # fmt: skip
    return Event(
        str(uuid.uuid4()), "referrals.agency.created", 1, NOON, "referrals", "t", None, data
    )


@pytest.fixture(
    params=[
        pytest.param("embedded_system", marks=pytest.mark.embedded),
        pytest.param("system", marks=pytest.mark.integration),
    ]
)
def any_system(request: pytest.FixtureRequest) -> System:
    """The embedded set-up, and the real PostgreSQL and RabbitMQ."""
    found: System = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def made(any_system: System) -> dict[str, str]:
    """The charity's referral.received email and SMS, as the rules make them: channel -> id."""
    system = any_system
    data = {
        "referral_id": REFERRAL_ID, "measure_id": None, "family_id": "fam-1",
        "agency_id": "charity-1", "service_code": "food_parcels", "urgency": "urgent",
        "status": "requested", "previous_status": None, "reason": None, "outcome": None,
        "at": NOON, "by": "lead-1", "referral_version": 1, "number": "R-2026-000009",
        "due_at": NOON + dt.timedelta(days=3),
    }  # fmt: skip
    with system.session("notifications") as session, session.begin():
        readmodels.remember_agencies(session, [charity_event()])
        readmodels.remember_referral(session, data)
        found = domain.notify(
            session,
            system.settings("notifications"),
            "ev-ref",
            "referrals.referral.status_changed",
            data,
            NOON,
        )
        return {m.channel: m.id for m in found}


def every_view(system: System, message_ids: list[str]) -> list[str]:
    """What each kind of reader gets from every view of these messages, as text."""
    seen = []
    readers = [(role, None) for role in ("admin", "coordinator", "auditor")]
    readers.append(("agency_staff", "volunteer-1"))  # the recipient
    for role, subject in readers:
        c = client(system, role, subject)
        listed = c.get("/messages?page_size=100")
        assert listed.status_code == 200, (role, listed.get_json())
        seen.append(json.dumps(listed.get_json(), ensure_ascii=False))
        for message_id in message_ids:
            one = c.get(f"/messages/{message_id}")
            assert one.status_code == 200, (role, one.get_json())
            seen.append(json.dumps(one.get_json(), ensure_ascii=False))
    return seen


def sealed_of(system: System, message_id: str) -> capabilities.Sealed | None:
    with system.session("notifications") as session:
        message = session.get(Message, message_id)
        assert message is not None
        return capabilities.unseal(system.settings("notifications"), message.sealed_links)


def test_no_view_shows_the_links_and_delivery_carries_them(
    any_system: System, made: dict[str, str], tmp_path: Any
) -> None:
    system = any_system
    assert set(made) == {"email", "sms"}
    for text in every_view(system, list(made.values())):
        assert "token=" not in text and not SHORT.search(text), text
    detail = client(system, "auditor").get(f"/messages/{made['email']}").get_json()
    assert capabilities.MARKER in detail["text"] and capabilities.MARKER in detail["html"]
    with system.session("notifications") as session:  # in the database: sealed, not plain
        for message in session.scalars(select(Message)):
            stored = " ".join(str(v) for v in vars(message).values())
            assert "token=" not in stored and "/r/" not in (message.text or "")

    worker = system.worker("notifications")
    with SmtpPeer() as smtp, SmppPeer() as smsc:
        settings = worker.settings.replace(
            smtp=SmtpSettings(smtp.host, smtp.port, None, None, False, "opora@opora.test")
        )
        ctx = JobContext(settings, worker.sessions, worker.tables)
        provider = parse_sms_provider(
            f"smpp://opora:secret@{smsc.host}:{smsc.port}?source=Opora&name=smpp-a", tmp_path
        )
        assert delivery.deliver_queued(ctx, now=NOON, sms=delivery.SmsPool([provider])) == 2
        assert wait_until(lambda: len(smtp.messages()) == 1 and len(smsc.messages) == 1)
        mail = smtp.messages()[0]
        text = mail.get_body(("plain",)).get_content()
        html = mail.get_body(("html",)).get_content()
        sms_text = smsc.messages[0].text
    [link] = SIGNED.findall(text)
    assert link in html and capabilities.MARKER not in text + html
    token = link.split("token=")[1]
    check_link_token(settings, token, "referral", REFERRAL_ID, 3600)  # a working link
    [short] = SHORT.findall(sms_text)
    assert capabilities.MARKER not in sms_text
    # the short link leads to a working signed link of the same referral
    follow = system.app("notifications").test_client().get(short.removeprefix("https://opora.test"))
    assert follow.status_code == 302
    assert SIGNED.fullmatch(follow.headers["Location"])
    check_link_token(settings, follow.headers["Location"].split("token=")[1], "referral",
                     REFERRAL_ID, 3600)  # fmt: skip
    # delivered, the views still show none of them
    for text in every_view(system, list(made.values())):
        assert "token=" not in text and short not in text


def test_a_resend_issues_fresh_links_and_ends_the_old_short_link(
    any_system: System, made: dict[str, str]
) -> None:
    system = any_system
    admin = client(system, "admin")
    old_sms, old_email = sealed_of(system, made["sms"]), sealed_of(system, made["email"])
    assert old_sms is not None and old_email is not None
    old_short = old_sms.links[capabilities.MARKER].removeprefix("https://opora.test")
    anyone = system.app("notifications").test_client()
    assert anyone.get(old_short).status_code == 302

    # the recipient's link goes to no other address than theirs on record
    for message_id, elsewhere in ((made["email"], "me@admin.test"), (made["sms"], "+79990000000")):
        refused = admin.post(
            f"/messages/{message_id}/resend", json={"reason": "to me", "address": elsewhere}
        )
        assert refused.status_code == 422 and "address" in refused.get_json()["errors"]
    on_record = admin.post(
        f"/messages/{made['sms']}/resend",
        json={"reason": "the same phone", "address": "8 (911) 000-00-05"},
    )
    assert on_record.status_code == 201, on_record.get_json()

    copies = {}
    for channel, message_id in made.items():
        response = admin.post(f"/messages/{message_id}/resend", json={"reason": "lost phone"})
        assert response.status_code == 201, response.get_json()
        body = json.dumps(response.get_json(), ensure_ascii=False)
        assert "token=" not in body and not SHORT.search(body)
        copies[channel] = response.get_json()["id"]
    new_sms, new_email = sealed_of(system, copies["sms"]), sealed_of(system, copies["email"])
    assert new_sms is not None and new_email is not None
    assert new_email.links[capabilities.MARKER] != old_email.links[capabilities.MARKER]
    assert new_sms.target != old_sms.target and SIGNED.fullmatch(new_sms.target or "")
    new_short = new_sms.links[capabilities.MARKER].removeprefix("https://opora.test")
    assert new_short != old_short
    assert anyone.get(old_short).status_code == 404  # the old short link ends
    assert anyone.get(new_short).headers["Location"] == new_sms.target
    for text in every_view(system, [*made.values(), *copies.values()]):
        assert "token=" not in text and not SHORT.search(text)


def test_the_retention_purge_takes_the_sealed_links_too(
    any_system: System, made: dict[str, str]
) -> None:
    system = any_system
    short = sealed_of(system, made["sms"]).links[capabilities.MARKER]  # type: ignore[union-attr]
    with system.session("notifications") as session, session.begin():
        assert delivery.purge_bodies(session, NOON + dt.timedelta(days=31), 30) == 2
    with system.session("notifications") as session:
        for message in session.scalars(select(Message)):
            assert (message.sealed_links, message.short_code, message.body_purged) == (
                None,
                None,
                True,
            )
    anyone = system.app("notifications").test_client()
    assert anyone.get(short.removeprefix("https://opora.test")).status_code == 404


def test_the_referral_refuses_the_link_a_resend_replaced(any_system: System) -> None:
    """Across the bus: referrals sends the referral, notifications makes the charity's email
    with its answer link; after a resend (``notifications.link.reissued``) referrals opens the
    fresh link and refuses the old one."""
    system = any_system
    admin = system.app("referrals").test_client()
    admin.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token('admin')}"
    charity = charity_event().data
    agency = {k: charity[k] for k in ("name", "kind", "districts", "delivery")}
    agency.update(id="charity-1", services=["food_aid"], contacts=[
        {k: charity["contacts"][0][k] for k in ("person_id", "name", "role", "email", "phone")}
    ])  # fmt: skip
    assert admin.post("/agencies", json=agency).status_code == 201
    system.relay("referrals")  # the directory first: the file transport keeps no order
    system.consume("notifications")
    with system.session("referrals") as session, session.begin():
        directory.remember_agreement(
            session,
            {"agreement_id": "agr-1", "case_id": "c", "family_id": "fam-1",
             "signed_on": dt.date.today() - dt.timedelta(days=1),
             "valid_until": dt.date.today() + dt.timedelta(days=90),
             "consent_data_processing": True, "share_with": ["charity"]},
        )  # fmt: skip
    lead = system.app("referrals").test_client()
    lead.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token('lead_specialist')}"
    referral = {
        "family_id": "fam-1", "family_number": "Т-001", "district": "Тарногский район",
        "service_code": "food_aid", "agency_id": "charity-1", "reason": "продуктовый набор",
        "urgency": "urgent", "deadline": (dt.date.today() + dt.timedelta(days=30)).isoformat(),
        "contact": {"person_id": "spec-1", "name": "Специалист"},
    }  # fmt: skip
    created = lead.post("/referrals", json=referral)
    assert created.status_code == 201, created.get_json()
    referral_id = created.get_json()["id"]
    system.relay("referrals")
    system.consume("notifications")
    with system.session("notifications") as session:
        email = session.scalars(
            select(Message).where(Message.recipient_id == "volunteer-1", Message.channel == "email")
        ).one()
    old = sealed_of(system, email.id)
    assert old is not None
    old_path = old.links[capabilities.MARKER].removeprefix("https://opora.test")
    anyone = system.app("referrals").test_client()
    assert anyone.get(old_path).status_code == 200
    time.sleep(1.05)  # tokens carry whole seconds: the fresh one is issued in a later one
    resent = client(system, "admin").post(f"/messages/{email.id}/resend", json={"reason": "lost"})
    assert resent.status_code == 201, resent.get_json()
    fresh = sealed_of(system, resent.get_json()["id"])
    assert fresh is not None
    fresh_path = fresh.links[capabilities.MARKER].removeprefix("https://opora.test")
    assert fresh_path.startswith(f"/referrals/{referral_id}/respond?token=")
    assert anyone.get(old_path).status_code == 200  # until referrals hears of the resend
    system.relay("notifications")
    system.consume("referrals")
    refused = anyone.post(old_path, json={"action": "accept"})
    assert refused.status_code == 401 and "replaced" in refused.get_json()["detail"]
    assert anyone.get(old_path).status_code == 401
    accepted = anyone.post(fresh_path, json={"action": "accept"})
    assert accepted.status_code == 200 and accepted.get_json()["status"] == "accepted"
