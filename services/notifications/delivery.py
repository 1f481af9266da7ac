"""Email delivery: SMTP in production, a folder of .eml files in the embedded mode.

Sending sits outside any transaction: a message is claimed (``sending``) and
committed, sent, then marked. Its Message-ID is fixed by our id, so a resend
after a crash is recognisable as the same message.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from sqlalchemy import select, update

from services.notifications import domain, events
from services.notifications.models import Message
from shared.config import Settings
from shared.db import transaction, utcnow
from shared.worker import Job, JobContext

log = logging.getLogger(__name__)

STUCK_AFTER = dt.timedelta(minutes=10)


class PermanentFailure(Exception):
    pass


def build_email(message: Message, settings: Settings) -> EmailMessage:
    email = EmailMessage()
    email["From"] = settings.smtp.sender
    email["To"] = message.address
    email["Subject"] = message.subject or "Opora"
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = f"<{message.id}@opora>"
    email.set_content(message.body or "")
    return email


def send_email(email: EmailMessage, settings: Settings) -> str:
    smtp = settings.smtp
    if smtp.host is None:
        folder = settings.data_dir / "mail"
        folder.mkdir(parents=True, exist_ok=True)
        path = Path(folder / f"{email['Message-ID'].strip('<>')}.eml")
        path.write_bytes(bytes(email))
        return str(email["Message-ID"])
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=30) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            client.send_message(email)
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentFailure("recipient refused") from exc
    return str(email["Message-ID"])


def deliver_queued(ctx: JobContext, limit: int = 50) -> int:
    now = utcnow()
    with transaction(ctx.sessions) as session:
        session.execute(
            update(Message)
            .where(Message.state == "sending", Message.next_attempt_at < now - STUCK_AFTER)
            .values(state="queued")
        )
        claimed = session.scalars(
            select(Message)
            .where(
                Message.state == "queued",
                Message.channel == "email",
                Message.next_attempt_at <= now,
            )
            .order_by(Message.created_at)
            .limit(limit)
        ).all()
        for message in claimed:
            message.state = "sending"
            message.next_attempt_at = now
        ids = [m.id for m in claimed]
    for message_id in ids:
        with transaction(ctx.sessions) as session:
            message = session.get(Message, message_id)
            assert message is not None
            try:
                provider_id = send_email(build_email(message, ctx.settings), ctx.settings)
                domain.mark_sent(message, provider_id, utcnow())
                events.publish(
                    session,
                    "notifications.message.sent",
                    {
                        "message_id": message.id,
                        "source_event_id": message.source_event_id,
                        "channel": message.channel,
                        "recipient_id": message.recipient_id,
                        "state": message.state,
                    },
                )
            except PermanentFailure as exc:
                domain.mark_failed_attempt(message, str(exc), utcnow(), permanent=True)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning(
                    "email not sent; will retry",
                    extra={"message_id": message.id, "error": type(exc).__name__},
                )
                domain.mark_failed_attempt(message, f"{type(exc).__name__}: {exc}", utcnow())
    return len(ids)


jobs = [Job("deliver-email", 2.0, deliver_queued)]
