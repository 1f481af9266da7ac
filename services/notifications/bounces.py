"""Late bounces: a delivery status notification (RFC 3464) that arrives after the SMTP server
took the message moves it to ``bounced`` (or ``delivered`` on a positive report).

The mail system hands the DSN over as it received it (``POST /bounces``). It is read with the
stdlib ``email`` package: the ``multipart/report; report-type=delivery-status`` part (also
when the DSN arrives forwarded inside another message), its per-recipient fields, and the
returned message or headers, whose Message-ID is ours (``<message id@opora>``, set by the
channel). A report only counts for the address we sent to, so a DSN about someone else
cannot bounce a message. Reasons keep the status code (``5.1.1``) and never the server's
diagnostic text, which quotes addresses.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message as MimeMessage
from email.parser import HeaderParser

from sqlalchemy.orm import Session

from services.notifications import states
from services.notifications.models import Message
from services.notifications.outcomes import publish_outcome

OUR_MESSAGE_ID = re.compile(r"<([^<>@\s]+)@opora>")
STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
# what a per-recipient Action means for us; delayed, relayed and expanded are not final
ACTION_STATE = {"failed": "bounced", "delivered": "delivered"}


class NotADsn(ValueError):
    """The body is not a delivery status notification we can read; the text says why."""


@dataclass(frozen=True)
class RecipientReport:
    recipient: str | None  # Original-Recipient, else Final-Recipient, lower case
    final_recipient: str | None
    action: str
    status: str | None


@dataclass(frozen=True)
class Dsn:
    message_id: str | None  # our message's id from the returned Message-ID, when it is ours
    recipients: tuple[RecipientReport, ...]


@dataclass(frozen=True)
class BounceOutcome:
    matched: bool
    message_id: str | None
    state: str | None
    action: str | None


def _address(field: str | None) -> str | None:
    """``rfc822; User@Example.org`` -> ``user@example.org`` (other address types: None)."""
    if not field:
        return None
    kind, _, address = str(field).partition(";")
    if kind.strip().lower() != "rfc822" or not address.strip():
        return None
    return address.strip().strip("<>").lower()


def _report(message: MimeMessage) -> MimeMessage:
    for part in message.walk():
        if (
            part.get_content_type() == "multipart/report"
            and str(part.get_param("report-type") or "").lower() == "delivery-status"
        ):
            return part
    raise NotADsn("no multipart/report part with report-type=delivery-status")


def _parts(message: MimeMessage) -> list[MimeMessage]:
    """The sub-messages of a multipart, message/rfc822 or message/delivery-status part."""
    payload = message.get_payload()
    return [p for p in payload if isinstance(p, MimeMessage)] if isinstance(payload, list) else []


def _returned_headers(report: MimeMessage) -> MimeMessage | None:
    for part in _parts(report):
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = _parts(part)
            return inner[0] if inner else None
        if kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
            return HeaderParser().parsestr(text)
    return None


def parse_dsn(raw: bytes) -> Dsn:
    """The DSN's per-recipient reports and our message id; NotADsn when it is not one."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    report = _report(message)
    status_parts = [p for p in _parts(report) if p.get_content_type() == "message/delivery-status"]
    if not status_parts:
        raise NotADsn("the report has no message/delivery-status part")
    blocks = _parts(status_parts[0])
    if len(blocks) < 2:
        raise NotADsn("the delivery-status part has no per-recipient fields")
    recipients = []
    for block in blocks[1:]:  # the first block holds the per-message fields
        action = str(block.get("Action") or "").strip().lower()
        if not action:
            continue
        final = _address(block.get("Final-Recipient"))
        status = str(block.get("Status") or "").strip().split(" ")[0]
        recipients.append(
            RecipientReport(
                recipient=_address(block.get("Original-Recipient")) or final,
                final_recipient=final,
                action=action,
                status=status if STATUS.match(status) else None,
            )
        )
    if not recipients:
        raise NotADsn("the delivery-status part names no recipient with an action")
    returned = _returned_headers(report)
    found = OUR_MESSAGE_ID.search(str(returned.get("Message-ID") or "")) if returned else None
    return Dsn(found.group(1) if found else None, tuple(recipients))


def apply_dsn(session: Session, dsn: Dsn, now: dt.datetime) -> BounceOutcome:
    """Move our message on the report about its address; unmatched reports change nothing."""
    message = session.get(Message, dsn.message_id) if dsn.message_id else None
    if message is None or message.channel != "email":
        return BounceOutcome(False, None, None, None)
    ours = message.address.lower()
    report = next((r for r in dsn.recipients if ours in (r.recipient, r.final_recipient)), None)
    if report is None:
        return BounceOutcome(False, None, None, None)
    to = ACTION_STATE.get(report.action)
    if to is None or not states.can_move(message.state, to):
        return BounceOutcome(True, message.id, message.state, report.action)
    status = report.status or "no status"
    detail = f"delivery status notification: {report.action} ({status})"
    session.add(states.move(message, to, now, provider="dsn", detail=detail))
    if to == "bounced":
        message.last_error = f"bounced after acceptance: {status}"
        publish_outcome(session, "notifications.message.failed", message, reason=message.last_error)
    return BounceOutcome(True, message.id, message.state, report.action)
