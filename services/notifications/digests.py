"""The daily digest: digest-priority emails held for people who chose a digest go out as one
``digest`` email at the person's digest hour (local time).

A digest is a message of its own, keyed ``digest:<person>:<local date>``, so a day gets one
however often the job runs. The held messages it lists move held -> delivered with provider
"digest" and the detail "included in digest <id>"; their ``digest_id`` points to it, and the
digest's own status tells whether it reached the person.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.notifications import domain, preferences, states
from services.notifications.models import Message
from services.notifications.recipients import Addressee

DIGEST_EVENT = "notifications.digest"


def due_people(session: Session) -> list[str]:
    return list(
        session.scalars(
            select(Message.recipient_id)
            .where(Message.state == "held", Message.hold_reason == "digest")
            .distinct()
        )
    )


def make_digest(session: Session, person_id: str, now: dt.datetime) -> Message | None:
    """The person's digest if their digest time has come and held messages wait for it."""
    prefs = preferences.for_person(session, person_id)
    day, moment = preferences.digest_moment(prefs, now)
    held = session.scalars(
        select(Message)
        .where(
            Message.recipient_id == person_id,
            Message.state == "held",
            Message.hold_reason == "digest",
            Message.created_at <= moment,
        )
        .order_by(Message.created_at, Message.id)
    ).all()
    if not held:
        return None
    source = f"digest:{person_id}:{day.isoformat()}"
    if domain.exists(session, source, person_id, "email"):
        return None  # today's went out; these wait for tomorrow's
    items = [
        {
            "subject": m.subject or "",
            "url": m.link or "",
            "at": preferences.local_text(m.created_at, prefs),
        }
        for m in held
    ]
    context = {"date": day.strftime("%d.%m.%Y"), "count": len(items), "items": items}
    made = domain.make(
        session,
        source_id=source,
        source_type=DIGEST_EVENT,
        who=Addressee(person_id, held[-1].address, None),
        prefs=prefs,
        template="digest",
        channels=("email",),
        priority="normal",
        context=context,
        now=now,
    )
    if not made:
        return None
    digest = made[0]
    for message in held:
        session.add(
            states.move(
                message,
                "delivered",
                now,
                provider="digest",
                detail=f"included in digest {digest.id}",
            )
        )
        message.digest_id = digest.id
        message.hold_reason = None
    return digest


def send_digests(session: Session, now: dt.datetime) -> int:
    made = 0
    for person_id in due_people(session):
        with session.begin_nested():
            if make_digest(session, person_id, now) is not None:
                made += 1
    return made
