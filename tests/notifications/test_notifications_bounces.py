"""Late bounces and short links on the embedded set-up, with the real SMTP peer.

An email goes through SmtpSender to aiosmtpd and is ``sent``; then the mail system hands us
a delivery status notification built per RFC 3464 (``multipart/report`` with a
``message/delivery-status`` part and the returned message) at ``POST /bounces``, and the email
is ``bounced``. The SMS of the same event carries a short link that ``GET /r/<code>``
redirects to the signal it is about.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from email import message_from_bytes
from email.message import Message as MimeMessage
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate
from typing import Any

import pytest
from conftest import System
from sqlalchemy import select

from services.notifications import bounces, delivery, domain
from services.notifications.models import Message, MessageHistory, Recipient
from shared.config import SmtpSettings
from shared.worker import JobContext

from .peers import SmtpPeer

pytestmark = pytest.mark.embedded

ADDRESS = "coordinator@district.test"


def dsn(
    returned: MimeMessage | None,
    *,
    recipient: str = ADDRESS,
    action: str = "failed",
    status: str = "5.1.1",
    headers_only: bool = False,
) -> bytes:
    """A DSN as an MTA writes it (RFC 3464 section 2): a human-readable part, the per-message
    and per-recipient fields, and the returned message (or only its headers)."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.district.test"
    report["To"] = "opora@opora.test"
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = formatdate()
    report["Message-ID"] = f"<{uuid.uuid4()}@mx.district.test>"
    report.attach(MIMEText("Your message could not be delivered.\n", "plain"))
    per_message, per_recipient = MimeMessage(), MimeMessage()
    per_message["Reporting-MTA"] = "dns; mx.district.test"
    per_message["Arrival-Date"] = formatdate()
    per_recipient["Original-Recipient"] = f"rfc822;{recipient}"
    per_recipient["Final-Recipient"] = f"rfc822; {recipient.upper()}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Diagnostic-Code"] = f"smtp; 550 5.1.1 <{recipient}>: Recipient address rejected"
    status_part = MimeMessage()
    status_part["Content-Type"] = "message/delivery-status"
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    if returned is not None:
        if headers_only:
            headers = "".join(f"{k}: {v}\n" for k, v in returned.items())
            part = MIMEText(headers, "rfc822-headers")
            report.attach(part)
        else:
            report.attach(MIMEMessage(returned))
    return report.as_bytes()


@pytest.fixture
def sent(embedded_system: System, smtp_server: SmtpPeer) -> dict[str, Any]:
    """An urgent signal's email, sent to the SMTP peer; its SMS waits in the queue."""
    system = embedded_system
    signal_id = str(uuid.uuid4())
    with system.session("notifications") as session, session.begin():
        session.add(Recipient(person_id="coord-1", roles=["coordinator"], districts=["Тарногский район"],
                              email=ADDRESS, phone="+79110000001", active=True))  # fmt: skip
        session.flush()
        made = domain.notify(
            session, system.settings("notifications"), str(uuid.uuid4()),
            "referrals.signal.urgent",
            {"signal_id": signal_id, "district": "Тарногский район", "priority": "red",
             "reporter_agency_id": None,
             "triage_due_at": dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)},
            dt.datetime.now(dt.UTC),
        )  # fmt: skip
        ids = {m.channel: m.id for m in made}
        # only the email now: the SMS stays queued for the short-link test
        session.get(Message, ids["sms"]).next_attempt_at = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)  # type: ignore[union-attr]
    worker = system.worker("notifications")
    smtp = SmtpSettings(smtp_server.host, smtp_server.port, None, None, False, "opora@opora.test")
    ctx = JobContext(worker.settings.replace(smtp=smtp), worker.sessions, worker.tables)
    assert delivery.deliver_queued(ctx) == 1
    [mail] = smtp_server.messages()
    return {"email": ids["email"], "sms": ids["sms"], "signal_id": signal_id, "mail": mail}


def state_of(system: System, message_id: str) -> str:
    with system.session("notifications") as session:
        return session.get(Message, message_id).state  # type: ignore[union-attr]


def bounce_path(system: System) -> str:
    admin = system.app("notifications").test_client()
    admin.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token('admin')}"
    url = admin.get("/bounces/url").get_json()["url"]
    assert url.startswith("https://opora.test/bounces?token=")
    return url.removeprefix("https://opora.test")


def post_dsn(system: System, path: str, body: bytes) -> Any:
    anonymous = system.app("notifications").test_client()
    return anonymous.post(path, data=body, content_type="message/rfc822")


def test_a_late_bounce_marks_the_sent_email_bounced_once(
    embedded_system: System, sent: dict[str, Any]
) -> None:
    system = embedded_system
    assert state_of(system, sent["email"]) == "sent"
    path = bounce_path(system)
    response = post_dsn(system, path, dsn(sent["mail"]))
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        "matched": True, "message_id": sent["email"], "state": "bounced", "action": "failed",
    }  # fmt: skip
    with system.session("notifications") as session:
        message = session.get(Message, sent["email"])
        assert message is not None and message.last_error == "bounced after acceptance: 5.1.1"
        last = session.scalars(
            select(MessageHistory)
            .where(MessageHistory.message_id == message.id)
            .order_by(MessageHistory.id.desc())
        ).first()
        assert last is not None
        assert (last.from_state, last.to_state, last.provider) == ("sent", "bounced", "dsn")
        outbox = system.worker("notifications").tables.outbox
        bodies = [json.loads(b) for b in session.scalars(select(outbox.c.body))]
    failed = [b["data"] for b in bodies if b["type"] == "notifications.message.failed"]
    assert [f["state"] for f in failed] == ["bounced"]
    assert ADDRESS not in json.dumps(failed)  # no address, no diagnostic text
    # the mail system may hand the same DSN over twice: nothing moves again
    again = post_dsn(system, path, dsn(sent["mail"])).get_json()
    assert again["matched"] is True and again["state"] == "bounced"
    assert len([b for b in bodies if b["type"] == "notifications.message.failed"]) == 1


def test_returned_headers_only_and_a_positive_report(
    embedded_system: System, sent: dict[str, Any]
) -> None:
    system = embedded_system
    path = bounce_path(system)
    body = dsn(sent["mail"], action="delivered", status="2.0.0", headers_only=True)
    assert post_dsn(system, path, body).get_json()["state"] == "delivered"
    # a bounce after the relay had reported delivery still counts
    later = post_dsn(system, path, dsn(sent["mail"], headers_only=True)).get_json()
    assert later["state"] == "bounced"


def test_a_forwarded_dsn_is_read_and_a_delay_changes_nothing(
    embedded_system: System, sent: dict[str, Any]
) -> None:
    system = embedded_system
    path = bounce_path(system)
    delayed = dsn(sent["mail"], action="delayed", status="4.4.7")
    assert post_dsn(system, path, delayed).get_json()["state"] == "sent"
    wrapper = MIMEMultipart()
    wrapper["Subject"] = "Fwd: Undelivered Mail"
    wrapper.attach(MIMEText("see attached", "plain"))
    wrapper.attach(MIMEMessage(message_from_bytes(dsn(sent["mail"]))))
    assert post_dsn(system, path, wrapper.as_bytes()).get_json()["state"] == "bounced"


def test_a_dsn_about_another_address_or_no_message_of_ours_moves_nothing(
    embedded_system: System, sent: dict[str, Any]
) -> None:
    system = embedded_system
    path = bounce_path(system)
    other = post_dsn(system, path, dsn(sent["mail"], recipient="someone@else.test")).get_json()
    assert other == {"matched": False, "message_id": None, "state": None, "action": None}
    assert post_dsn(system, path, dsn(None)).get_json()["matched"] is False
    assert state_of(system, sent["email"]) == "sent"


def test_bad_bodies_and_tokens_are_clear_4xx(embedded_system: System) -> None:
    system = embedded_system
    path = bounce_path(system)
    not_a_dsn = post_dsn(system, path, b"Subject: hello\r\n\r\nhi\r\n")
    assert not_a_dsn.status_code == 422
    assert "multipart/report" in not_a_dsn.get_json()["detail"]
    assert post_dsn(system, path, b"").status_code == 422
    assert post_dsn(system, "/bounces", dsn(None)).status_code == 422  # no token
    forged = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
    assert post_dsn(system, forged, dsn(None)).status_code == 401
    wrong_purpose = system.app("notifications").test_client()
    wrong_purpose.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token('admin')}"
    receipt_url = wrong_purpose.get("/receipts/dsn/url").get_json()["url"]
    token = receipt_url.split("token=")[1]
    assert post_dsn(system, f"/bounces?token={token}", dsn(None)).status_code == 401


def test_parse_reads_the_fields_and_never_keeps_the_diagnostic() -> None:
    returned = MIMEText("body")
    returned["Message-ID"] = "<0f0e0d0c-1111-4222-8333-444455556666@opora>"
    parsed = bounces.parse_dsn(dsn(returned, status="5.2.2"))
    assert parsed.message_id == "0f0e0d0c-1111-4222-8333-444455556666"
    [report] = parsed.recipients
    assert (report.recipient, report.final_recipient, report.action, report.status) == (
        ADDRESS, ADDRESS, "failed", "5.2.2",
    )  # fmt: skip
    foreign = MIMEText("body")
    foreign["Message-ID"] = "<abc@elsewhere.test>"
    assert bounces.parse_dsn(dsn(foreign)).message_id is None


# --- short links -------------------------------------------------------------------------------


def test_the_sms_short_link_redirects_to_the_signal(
    embedded_system: System, sent: dict[str, Any]
) -> None:
    system = embedded_system
    with system.session("notifications") as session:
        sms = session.get(Message, sent["sms"])
        assert sms is not None and sms.short_code
        code, text = sms.short_code, sms.text or ""
    assert text.endswith(f"https://opora.test/r/{code}")
    anonymous = system.app("notifications").test_client()
    response = anonymous.get(f"/r/{code}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"https://opora.test/signals/{sent['signal_id']}"
    assert anonymous.get("/r/nothing").status_code == 404


def test_a_short_link_never_leads_off_our_site(
    embedded_system: System, sent: dict[str, Any]
) -> None:
    system = embedded_system
    with system.session("notifications") as session, session.begin():
        sms = session.get(Message, sent["sms"])
        assert sms is not None
        sms.link = "https://evil.test/phish"
        code = sms.short_code
    assert system.app("notifications").test_client().get(f"/r/{code}").status_code == 404
    assert not domain.short_target_ok("https://opora.test.evil.test/x", "https://opora.test")
    assert domain.short_target_ok("https://opora.test/cases/1", "https://opora.test")
