"""Email channel against a real SMTP server (aiosmtpd) started by the tests."""

from __future__ import annotations

import email
import email.policy
import smtplib
import ssl

import pytest

from services.notifications.channels import (
    Attachment,
    Email,
    FolderSender,
    PermanentFailure,
    SmtpSender,
    TemporaryFailure,
    build_email_sender,
)
from services.notifications.channels.email import build_mime, calendar_method
from shared.config import load_settings

from .peers import SmtpPeer, client_ssl_context, free_port, wait_until

ICS = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Opora//raids//EN\r\nMETHOD:REQUEST\r\n"
    b"BEGIN:VEVENT\r\nUID:raid-1@opora\r\nDTSTAMP:20250101T080000Z\r\n"
    b"DTSTART:20250102T100000Z\r\nDTEND:20250102T120000Z\r\nSUMMARY:\xd0\xa0\xd0\xb5\xd0\xb9\xd0\xb4\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n"
)
SENDER = "opora@opora.test"


def invitation(message_id: str, to: str = "coordinator@agency.test") -> Email:
    return Email(
        message_id=message_id,
        to=to,
        subject="Opora: рейд R-12 завтра",
        text="Рейд R-12: https://opora.test/raids/12\n",
        html="<p>Рейд <a href='https://opora.test/raids/12'>R-12</a></p>",
        attachments=(Attachment("raid.ics", "text/calendar", ICS),),
    )


def tls_sender(peer: SmtpPeer, **kwargs: object) -> SmtpSender:
    options: dict[str, object] = {
        "user": peer.user,
        "password": peer.password,
        "security": "starttls",
        "ssl_context": client_ssl_context(),
        "timeout": 5.0,
    }
    options.update(kwargs)
    return SmtpSender(peer.host, peer.port, SENDER, **options)  # type: ignore[arg-type]


def test_starttls_auth_content_and_one_connection_for_many_sends(smtp_tls_server):
    sender = tls_sender(smtp_tls_server)
    sents = [sender.send(invitation(f"msg-{i}")) for i in range(5)]
    sender.close()

    assert [s.provider_message_ids for s in sents] == [(f"<msg-{i}@opora>",) for i in range(5)]
    assert len(smtp_tls_server.received) == 5
    assert smtp_tls_server.connections == 1 == sender.connections
    mail = smtp_tls_server.received[0]
    assert mail.tls and mail.authenticated
    assert mail.mail_from == SENDER and mail.rcpt_tos == ["coordinator@agency.test"]

    message = mail.message
    assert message["Message-ID"] == "<msg-0@opora>"
    assert message["Subject"] == "Opora: рейд R-12 завтра"
    assert message["From"] == SENDER and message["To"] == "coordinator@agency.test"
    assert message.get_content_type() == "multipart/mixed"
    alternative, calendar = message.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html = alternative.get_payload()
    assert plain.get_content_type() == "text/plain"
    # the wire has CRLF line ends; the parser keeps them
    assert plain.get_content().replace("\r\n", "\n") == "Рейд R-12: https://opora.test/raids/12\n"
    assert html.get_content_type() == "text/html" and "R-12</a>" in html.get_content()

    raw_headers = mail.data.decode("ascii")
    assert "Content-Type: text/calendar; method=REQUEST; charset=UTF-8" in raw_headers
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "REQUEST"
    assert calendar.get_content_disposition() == "attachment"
    assert calendar.get_filename() == "raid.ics"
    assert calendar.get_payload(decode=True) == ICS  # CRLF line ends kept


def test_cancel_method_is_read_from_the_ics():
    cancel = ICS.replace(b"METHOD:REQUEST", b"METHOD:CANCEL")
    assert calendar_method(cancel) == "CANCEL"
    assert calendar_method(ICS.replace(b"METHOD:REQUEST\r\n", b"")) == "PUBLISH"
    message = build_mime(
        Email(
            "m", "a@b.test", "s", "t", attachments=(Attachment("x.ics", "text/calendar", cancel),)
        ),
        SENDER,
    )
    part = message.get_payload()[-1]
    assert part["Content-Type"] == "text/calendar; method=CANCEL; charset=UTF-8"


def test_broken_ics_and_header_injection_are_permanent():
    with pytest.raises(PermanentFailure):
        build_mime(
            Email(
                "m",
                "a@b.test",
                "s",
                "t",
                attachments=(Attachment("x.ics", "text/calendar", b"nope"),),
            ),
            SENDER,
        )
    with pytest.raises(PermanentFailure):
        build_mime(Email("m", "a@b.test", "s\r\nBcc: x@evil.test", "t"), SENDER)


def test_other_attachments_keep_their_type():
    message = build_mime(
        Email(
            "m",
            "a@b.test",
            "s",
            "t",
            attachments=(Attachment("a.pdf", "application/pdf", b"%PDF-1"),),
        ),
        SENDER,
    )
    part = message.get_payload()[-1]
    assert part.get_content_type() == "application/pdf"
    assert part.get_payload(decode=True) == b"%PDF-1"


def test_implicit_tls():
    with SmtpPeer(tls="implicit") as peer:
        sender = SmtpSender(
            peer.host, peer.port, SENDER, security="tls", ssl_context=client_ssl_context()
        )
        sender.send(Email("m1", "a@b.test", "s", "t"))
        sender.close()
        assert len(peer.received) == 1 and peer.received[0].tls


def test_untrusted_certificate_is_a_temporary_failure(smtp_tls_server):
    sender = tls_sender(smtp_tls_server, ssl_context=ssl.create_default_context())
    with pytest.raises(TemporaryFailure):
        sender.send(invitation("m1"))
    assert smtp_tls_server.received == []


def test_wrong_password_is_temporary_and_names_no_secret(smtp_tls_server):
    sender = tls_sender(smtp_tls_server, password="wrong")
    with pytest.raises(TemporaryFailure) as failure:
        sender.send(invitation("m1"))
    assert "authentication" in failure.value.reason and "wrong" not in failure.value.reason
    assert smtp_tls_server.auth_failures >= 1  # smtplib tries PLAIN, then LOGIN


def test_reconnects_once_when_the_server_dropped_the_session(smtp_tls_server):
    sender = tls_sender(smtp_tls_server)
    sender.send(invitation("m1"))
    smtp_tls_server.drop_connections()
    assert wait_until(lambda: all(s.transport is None for s in smtp_tls_server._sessions))
    sender.send(invitation("m2"))
    sender.close()
    assert [m["Message-ID"] for m in smtp_tls_server.messages()] == ["<m1@opora>", "<m2@opora>"]
    assert smtp_tls_server.connections == 2 == sender.connections


def test_idle_session_is_checked_with_noop_and_replaced(smtp_server):
    clock = [0.0]
    sender = SmtpSender(
        smtp_server.host,
        smtp_server.port,
        SENDER,
        security="none",
        idle_check=30,
        clock=lambda: clock[0],
    )
    sender.send(Email("m1", "a@b.test", "s", "t"))
    clock[0] = 10.0
    sender.send(Email("m2", "a@b.test", "s", "t"))
    assert sender.connections == 1
    smtp_server.drop_connections()
    assert wait_until(lambda: all(s.transport is None for s in smtp_server._sessions))
    clock[0] = 100.0
    sender.send(Email("m3", "a@b.test", "s", "t"))
    assert sender.connections == 2 and len(smtp_server.received) == 3


def test_4xx_refusal_is_temporary_then_the_next_send_goes(smtp_server):
    sender = SmtpSender(smtp_server.host, smtp_server.port, SENDER, security="none")
    smtp_server.refuse_for(60, code=451)
    with pytest.raises(TemporaryFailure) as failure:
        sender.send(Email("m1", "a@b.test", "s", "t"))
    assert failure.value.reason == "SMTP deferred the message (451)"
    smtp_server.refuse_for(0)
    sender.send(Email("m1", "a@b.test", "s", "t"))
    assert len(smtp_server.received) == 1
    assert sender.connections == 1  # the session survived the refusal (RSET)


def test_5xx_refusal_is_permanent(smtp_server):
    sender = SmtpSender(smtp_server.host, smtp_server.port, SENDER, security="none")
    smtp_server.refuse_for(60, code=554)
    with pytest.raises(PermanentFailure):
        sender.send(Email("m1", "a@b.test", "s", "t"))


def test_refused_recipient_is_permanent_and_not_quoted(smtp_server):
    smtp_server.reject_recipient("gone@agency.test")
    sender = SmtpSender(smtp_server.host, smtp_server.port, SENDER, security="none")
    with pytest.raises(PermanentFailure) as failure:
        sender.send(Email("m1", "gone@agency.test", "s", "t"))
    assert failure.value.reason == "recipient refused (550)"
    assert "gone" not in str(failure.value)
    sender.send(Email("m2", "ok@agency.test", "s", "t"))
    assert [m.rcpt_tos for m in smtp_server.received] == [["ok@agency.test"]]


def test_unreachable_server_is_temporary():
    sender = SmtpSender("127.0.0.1", free_port(), SENDER, security="none", timeout=2)
    with pytest.raises(TemporaryFailure) as failure:
        sender.send(Email("m1", "a@b.test", "s", "t"))
    assert failure.value.reason.startswith("SMTP connection failed")


def test_map_of_smtp_errors():
    from services.notifications.channels.email import map_smtp_error

    assert isinstance(map_smtp_error(smtplib.SMTPServerDisconnected()), TemporaryFailure)
    assert isinstance(map_smtp_error(smtplib.SMTPDataError(552, b"too big")), PermanentFailure)
    assert isinstance(map_smtp_error(smtplib.SMTPDataError(421, b"bye")), TemporaryFailure)
    deferred = smtplib.SMTPRecipientsRefused({"x@y.test": (450, b"busy")})
    assert isinstance(map_smtp_error(deferred), TemporaryFailure)
    assert isinstance(map_smtp_error(TimeoutError()), TemporaryFailure)


def test_folder_sender_writes_the_same_mime(tmp_path):
    folder = FolderSender(tmp_path / "mail", SENDER)
    sent = folder.send(invitation("m-1"))
    assert sent.provider_message_ids == ("<m-1@opora>",)
    path = tmp_path / "mail" / "m-1@opora.eml"
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["Message-ID"] == "<m-1@opora>"
    assert message.get_payload()[-1].get_param("method") == "REQUEST"
    assert [p.name for p in (tmp_path / "mail").iterdir()] == ["m-1@opora.eml"]  # no temp left


def test_build_email_sender_from_settings(tmp_path):
    base = {"OPORA_DATA_DIR": str(tmp_path)}
    embedded = build_email_sender(load_settings("notifications", base), env={})
    assert isinstance(embedded, FolderSender) and embedded.folder == tmp_path / "mail"

    smtp_env = dict(base, SMTP_HOST="mail.test", SMTP_STARTTLS="true", SMTP_USER="u")
    sender = build_email_sender(load_settings("notifications", smtp_env), env={})
    assert isinstance(sender, SmtpSender)
    assert (sender.port, sender.security, sender.user) == (587, "starttls", "u")

    implicit = build_email_sender(
        load_settings("notifications", dict(base, SMTP_HOST="mail.test", SMTP_PORT="465")), env={}
    )
    assert isinstance(implicit, SmtpSender) and implicit.security == "tls"

    test_mode = build_email_sender(
        load_settings("notifications", smtp_env), env={"NOTIFICATIONS_EMAIL_MODE": "test"}
    )
    assert isinstance(test_mode, FolderSender) and test_mode.name == "test"


@pytest.mark.parametrize(
    ("subject", "text", "html", "attachments"),
    [
        ("Opora: рейд R-12 завтра", "Рейд R-12\nhttps://opora.test/r/1\n", "<p>Рейд</p>", True),
        ("ASCII only", "plain ascii\r\nwith CRLF\rand CR\n", None, False),
        ("Очень длинная тема письма, " * 6, "x" * 1000 + "\n", "<p>" + "ы" * 500 + "</p>", True),
        ("s", "", None, False),
    ],
)
def test_wire_bytes_are_what_the_stdlib_generator_writes(
    subject: str, text: str, html: str | None, attachments: bool
) -> None:
    """wire_bytes writes parts itself (fast); the stdlib's BytesGenerator is the reference."""
    import io
    from email.generator import BytesGenerator

    from services.notifications.channels.email import _WIRE, wire_bytes

    extra = (
        (
            Attachment("invite.ics", "text/calendar", ICS),
            Attachment("a.pdf", "application/pdf", b"%PDF\x00\xff"),
        )
        if attachments
        else ()
    )
    message = build_mime(Email("m-1", "a@b.test", subject, text, html, extra), SENDER)
    reference = io.BytesIO()
    BytesGenerator(reference, mangle_from_=False, policy=_WIRE).flatten(message)
    assert wire_bytes(message) == reference.getvalue()
    parsed = email.message_from_bytes(wire_bytes(message), policy=email.policy.default)
    assert parsed["Subject"] == subject
