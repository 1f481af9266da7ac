"""Turning an event (or a reminder) into messages: rules pick the recipients, preferences decide
queue / hold / drop per channel, templates render the bodies now (so a later template edit does
not change what was decided), and the first state goes into the history.

One message per (source, recipient, channel): a source seen again makes nothing new. Subjects
and SMS texts name numbers and link to the case; they never carry a family member's name,
address or birth date (the templates' placeholders cannot hold them).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.notifications import preferences, states, templates
from services.notifications.models import Message
from services.notifications.preferences import Prefs
from services.notifications.rules import Addressee, RuleInput, rules_for
from shared.config import Settings
from shared.db import new_id
from shared.events import Unprocessable

log = logging.getLogger(__name__)

NOT_LINKS = ("ics_url", "link_url")


def notify(
    session: Session,
    settings: Settings,
    event_id: str,
    event_type: str,
    data: dict[str, Any],
    now: dt.datetime,
) -> list[Message]:
    """Every message the rules make of this event."""
    made: list[Message] = []
    for rule in rules_for(event_type, data):
        inp = RuleInput(session, settings, event_type, data)
        attachments = rule.attachments(inp)
        for who in unique(rule.recipients(inp)):
            prefs = preferences.for_person(session, who.person_id)
            made += make(
                session,
                source_id=event_id,
                source_type=event_type,
                who=who,
                prefs=prefs,
                template=rule.template,
                channels=rule.channels_of(data),
                priority=rule.priority_of(data),
                context=rule.context(inp, prefs),
                attachments=attachments,
                now=now,
            )
    return made


def unique(addressees: Iterable[Addressee]) -> list[Addressee]:
    seen: dict[str, Addressee] = {}
    for a in addressees:
        seen.setdefault(a.person_id, a)
    return list(seen.values())


def exists(session: Session, source_id: str, recipient_id: str, channel: str) -> bool:
    found = session.scalar(
        select(Message.id).where(
            Message.source_event_id == source_id,
            Message.recipient_id == recipient_id,
            Message.channel == channel,
        )
    )
    return found is not None


def link_of(context: dict[str, Any]) -> str | None:
    """What a digest links to: the first entity URL of the context."""
    for key, value in context.items():
        if key.endswith("_url") and key not in NOT_LINKS and value:
            return str(value)
    return None


def make(
    session: Session,
    *,
    source_id: str,
    source_type: str,
    who: Addressee,
    prefs: Prefs,
    template: str,
    channels: Sequence[str],
    priority: str,
    context: dict[str, Any],
    now: dt.datetime,
    attachments: Sequence[dict[str, str]] = (),
) -> list[Message]:
    made = []
    spec = templates.TEMPLATES[template]
    for channel in channels:
        address = who.email if channel == "email" else who.phone
        if not address or channel not in spec.channels:
            continue
        carried = list(attachments) if channel == "email" else []
        decision = preferences.decide(prefs, channel, priority, now, has_attachments=bool(carried))
        if decision.state is None:
            log.info(
                "message not made",
                extra={"source_event_id": source_id, "recipient_id": who.person_id,
                       "channel": channel, "reason": decision.skipped},
            )  # fmt: skip
            continue
        if exists(session, source_id, who.person_id, channel):
            continue
        try:
            rendered = templates.render(session, template, channel, prefs.language, context)
        except templates.RenderError as exc:
            raise Unprocessable(str(exc)) from None
        message = Message(
            id=new_id(),
            source_event_id=source_id,
            source_event_type=source_type,
            recipient_id=who.person_id,
            channel=channel,
            address=address,
            priority=priority,
            template_key=template,
            template_version=rendered.version,
            language=rendered.language,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            attachments=carried or None,
            link=link_of(context),
            hold_reason=decision.hold_reason,
            held_until=decision.held_until,
            attempts=0,
            next_attempt_at=now,
            provider_index=0,
            created_at=now,
            state=None,
        )
        detail = f"{priority}; {template} v{rendered.version} ({rendered.language})"
        if decision.hold_reason == "quiet_hours":
            detail += f"; held for the quiet hours until {decision.held_until:%Y-%m-%dT%H:%MZ}"
        elif decision.hold_reason == "digest":
            detail += "; held for the daily digest"
        history = states.move(message, decision.state, now, detail=detail)
        session.add(message)
        session.add(history)
        made.append(message)
    if made:
        session.flush()
    return made
