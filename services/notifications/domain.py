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
import secrets
import string
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.notifications import capabilities, delivery, preferences, prefetch, states, templates
from services.notifications.models import Message
from services.notifications.preferences import Prefs
from services.notifications.recipients import Addressee, RuleInput
from services.notifications.rules import rules_for
from services.notifications.template_defaults.specs import is_entity_link
from shared.config import Settings
from shared.db import new_id
from shared.events import Unprocessable

log = logging.getLogger(__name__)

SHORT_PATH = capabilities.SHORT_PATH
ANSWER_LINK = "link_url"  # a signed link for someone without an account (referral.received)
SHORT_CODE_ALPHABET = string.ascii_letters + string.digits
SHORT_CODE_LENGTH = 7


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
                channels=rule.channels_of(inp),
                priority=rule.priority_of(data),
                context=rule.context(inp, prefs),
                attachments=attachments,
                now=now,
                public_url=settings.public_url,
                settings=settings,
                family_id=family_of(data),
            )
    return made


def family_of(data: dict[str, Any]) -> str | None:
    """The family an event is about, when it names one (a raid's names several: none)."""
    family_id = data.get("family_id")
    return family_id if isinstance(family_id, str) and family_id else None


def unique(addressees: Iterable[Addressee]) -> list[Addressee]:
    seen: dict[str, Addressee] = {}
    for a in addressees:
        seen.setdefault(a.person_id, a)
    return list(seen.values())


def exists(session: Session, source_id: str, recipient_id: str, channel: str) -> bool:
    known = prefetch.already_made(session, source_id, recipient_id, channel)
    if known is not None:
        return known
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
        if is_entity_link(key) and value:
            return str(value)
    return None


def new_short_code() -> str:
    """A random code of 7 characters: 62**7 (3.5e12) codes, so a new SMS's code matches one of
    a million earlier ones with a chance of 3 in 10 million. The unique index refuses it then
    and the consumer's retry draws another; a query per SMS to rule it out would sit on the
    urgent path."""
    return "".join(secrets.choice(SHORT_CODE_ALPHABET) for _ in range(SHORT_CODE_LENGTH))


def short_target_ok(link: str | None, public_url: str) -> bool:
    """Only our own pages get a short link, so /r/ can never redirect elsewhere."""
    return bool(link) and str(link).startswith(public_url.rstrip("/") + "/")


def with_short_link(
    context: dict[str, Any], link: str | None, public_url: str | None
) -> tuple[dict[str, Any], str | None]:
    """An SMS's context with its entity link replaced by ``<public_url>/r/<code>``: a full link
    alone takes most of a UCS-2 segment's 70 characters."""
    if public_url is None or not short_target_ok(link, public_url):
        return context, None
    code = new_short_code()
    short = capabilities.short_url(public_url, code)
    return {k: short if v == link else v for k, v in context.items()}, code


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
    public_url: str | None = None,
    settings: Settings | None = None,
    family_id: str | None = None,
) -> list[Message]:
    """The person's messages on ``channels``; SMS link through a short link when
    ``public_url`` is given (the base the /r/ route answers on). Capability links are stored
    sealed, under ``settings``' link secret, and the bodies carry markers (capabilities.py).

    Inside a consumer batch (prefetch.batch) the rows are written at the batch's end, in one
    INSERT, and not returned as objects: nothing there reads them, and building three hundred
    ORM objects costs more than the rest of the handler.
    """
    made = []
    spec = templates.TEMPLATES[template]
    link = link_of(context)
    # what an SMS links to: the signed answer link when there is one, else the entity
    sms_link = context.get(ANSWER_LINK) or link  # kept a SignedLink: a resend reissues it
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
        values, short_code, target = context, None, link
        if channel == "sms":
            target = sms_link
            values, short_code = with_short_link(context, target, public_url)
        try:
            rendered = templates.render(session, template, channel, prefs.language, values)
        except templates.RenderError as exc:
            raise Unprocessable(str(exc)) from None
        short = (
            capabilities.short_url(public_url, short_code) if public_url and short_code else None
        )
        bodies, sealed = capabilities.redact(
            {"subject": rendered.subject, "text": rendered.text, "html": rendered.html},
            values.values(),
            short=short,
            target=target,
        )
        if sealed is not None:
            if settings is None:
                raise ValueError(f"{template}: capability links need the settings to be sealed")
            if sealed.target is not None:
                target = link  # the short link's capability target is kept sealed only
        message_id = new_id()
        row: dict[str, Any] = dict(
            id=message_id,
            source_event_id=source_id,
            source_event_type=source_type,
            recipient_id=who.person_id,
            family_id=family_id,
            channel=channel,
            address=address,
            priority=priority,
            template_key=template,
            template_version=rendered.version,
            language=rendered.language,
            subject=bodies["subject"],
            text=bodies["text"],
            html=bodies["html"],
            attachments=carried or None,
            link=target,
            short_code=short_code,
            sealed_links=capabilities.seal(settings, sealed) if settings else None,
            hold_reason=decision.hold_reason,
            held_until=decision.held_until,
            attempts=0,
            next_attempt_at=now,
            provider_index=0,
            body_purged=False,  # every server-defaulted column given: a plain executemany
            created_at=now,
            state=decision.state,
        )
        detail = f"{priority}; {template} v{rendered.version} ({rendered.language})"
        if decision.hold_reason == "quiet_hours":
            detail += f"; held for the quiet hours until {decision.held_until:%Y-%m-%dT%H:%MZ}"
        elif decision.hold_reason == "digest":
            detail += "; held for the daily digest"
        history = states.transition(message_id, None, decision.state, now, detail=detail)
        message = prefetch.made(session, row, history)
        if decision.state == "queued":
            delivery.wake_after_commit(session)
        if message is not None:
            made.append(message)
    if made and prefetch.current(session) is None:  # a batch flushes once, at its end
        session.flush()
    return made
