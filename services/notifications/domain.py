"""Who is told what, free of HTTP, broker and SMTP.

Subjects and SMS texts name the family's registry number and link to it; they
never carry names, addresses or birth dates.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.notifications.models import Message, Recipient

MAX_ATTEMPTS = 6


def coordinators_for(session: Session, district: str) -> list[Recipient]:
    recipients = session.scalars(select(Recipient).where(Recipient.active.is_(True))).all()
    return [
        r
        for r in recipients
        if "coordinator" in (r.roles or [])
        and (not r.districts or district in r.districts)
        and r.email
    ]


def new_family_messages(
    session: Session, event_id: str, event_type: str, data: dict[str, Any], public_url: str
) -> list[Message]:
    """Tell the district's coordinators that a family entered the data bank."""
    number = data["number"]
    link = f"{public_url}/families/{data['family_id']}"
    messages = []
    for recipient in coordinators_for(session, data["address"]["district"]):
        message = Message(
            source_event_id=event_id,
            source_event_type=event_type,
            recipient_id=recipient.person_id,
            channel="email",
            address=recipient.email,
            subject=f"Opora: новая семья {number} в банке данных",
            body=(
                f"В банк данных внесена семья {number} (категория: {data['category']}).\n"
                f"Карточка семьи: {link}\n\n"
                f"A family {number} entered the data bank. Open: {link}\n"
            ),
        )
        session.add(message)
        messages.append(message)
    return messages


def mark_sent(message: Message, provider_message_id: str, now: dt.datetime) -> None:
    message.state = "sent"
    message.provider_message_id = provider_message_id
    message.sent_at = now
    message.last_error = None


def mark_failed_attempt(
    message: Message, error: str, now: dt.datetime, permanent: bool = False
) -> None:
    """Back off exponentially with jitter; give up after MAX_ATTEMPTS or on a permanent refusal."""
    message.attempts += 1
    message.last_error = error[:500]
    if permanent or message.attempts >= MAX_ATTEMPTS:
        message.state = "failed"
        return
    message.state = "queued"
    delay = min(3600.0, 5 * 2**message.attempts) * (0.5 + random.random())
    message.next_attempt_at = now + dt.timedelta(seconds=delay)
