"""Delivery: claim queued messages, send them outside any transaction, record the outcomes.

A claim moves messages to ``sending`` and commits (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so worker replicas never take the same message) and hands back what to send, so no
transaction is open while we talk to a server. Outcomes are written in short transactions
with the history rows and the outbox events: an SMS's at once, emails' a group at a time
(RECORD_EVERY), because a database round trip per email costs about as much as sending it. A
worker that dies between a send and its record leaves the message in ``sending``; after
STUCK_AFTER it goes back to the queue and is sent again (an email with the same Message-ID).

The worker keeps its senders between runs (senders.py): one SMTP session and the SMS
providers. SMS go to the first healthy provider in failover order; on a temporary failure the
next provider is tried at once.

The deliver job drains the queue, then waits for the next message: a transaction that
queued one wakes it at commit (``wake_after_commit``), so an urgent SMS leaves in
milliseconds, not at the next tick.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from services.notifications import capabilities, states
from services.notifications.channels.base import (
    Attachment,
    Email,
    EmailSender,
    PermanentFailure,
    Sms,
    TemporaryFailure,
)
from services.notifications.models import MESSAGES, Message, MessageHistory
from services.notifications.outcomes import Claimed, Outcome, record_all
from services.notifications.senders import (
    Senders,
    SmsPool,
    forget_senders,
    senders_of,
    sms_pool,
    use_sms_pool,
    worker_email_sender,
)
from shared.config import ConfigError, Settings
from shared.db import transaction, utcnow
from shared.worker import JobContext

__all__ = [
    "Claimed",
    "Outcome",
    "Senders",
    "SmsPool",
    "claim",
    "deliver_due",
    "deliver_queued",
    "forget_senders",
    "send_email",
    "send_sms",
    "senders_of",
    "sms_pool",
    "use_sms_pool",
    "wait_for_work",
    "wake_after_commit",
]  # fmt: skip

log = logging.getLogger(__name__)

STUCK_AFTER = dt.timedelta(minutes=10)
ENV_CLAIM_TIMEOUT = "NOTIFICATIONS_CLAIM_TIMEOUT_SECONDS"
CLAIM_LIMIT = 50
RECORD_EVERY = 50  # emails sent before their outcomes are written (SMS: each at once)
DRAIN_SECONDS = 5.0  # the longest a deliver job run keeps claiming


# --- waking the deliver job --------------------------------------------------------------------

_work = threading.Event()
WAKE_KEY = "notifications.wake_delivery"


def wake_after_commit(session: Session) -> None:
    """Wake this process's deliver job when ``session``'s transaction commits."""
    if session.info.get(WAKE_KEY):
        return
    session.info[WAKE_KEY] = True

    def committed(done: Session) -> None:
        done.info.pop(WAKE_KEY, None)
        wake()

    event.listen(session, "after_commit", committed, once=True)


def wake() -> None:
    """Wake this process's deliver job now (work queued elsewhere, or shutting down)."""
    _work.set()


def wait_for_work(timeout: float) -> bool:
    """Block until a message was queued in this process, or ``timeout`` seconds."""
    woke = _work.wait(timeout)
    _work.clear()
    return woke


# --- claiming ----------------------------------------------------------------------------------


def release_held(session: Session, now: dt.datetime) -> int:
    """SMS held for the quiet hours go back to the queue once the hours are over."""
    due = session.scalars(
        select(Message).where(
            Message.state == "held",
            Message.hold_reason == "quiet_hours",
            Message.held_until <= now,
        )
    ).all()
    for message in due:
        session.add(states.move(message, "queued", now, detail="quiet hours over"))
        message.hold_reason = None
        message.next_attempt_at = now
    return len(due)


def claim_timeout(env: Mapping[str, str]) -> dt.timedelta:
    """NOTIFICATIONS_CLAIM_TIMEOUT_SECONDS (default 600): how long a claimed message may stay
    ``sending`` before a run sends it again, because the worker that claimed it died (or lost
    its database) between the claim and the record. Longer than one delivery run takes."""
    raw = (env.get(ENV_CLAIM_TIMEOUT) or "").strip()
    if not raw:
        return STUCK_AFTER
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_CLAIM_TIMEOUT} must be a number of seconds, got {raw!r}") from None
    if seconds <= 0:
        raise ConfigError(f"{ENV_CLAIM_TIMEOUT} must be positive")
    return dt.timedelta(seconds=seconds)


def _requeue_stuck(session: Session, now: dt.datetime, stuck_after: dt.timedelta) -> None:
    stuck = session.scalars(
        select(Message).where(
            Message.state == "sending", Message.next_attempt_at < now - stuck_after
        )
    ).all()
    for message in stuck:
        session.add(states.move(message, "queued", now, detail="claim expired; sending again"))
        message.next_attempt_at = now


CLAIM_COLUMNS = (
    Message.id, Message.source_event_id, Message.recipient_id, Message.channel, Message.address,
    Message.priority, Message.subject, Message.text, Message.html, Message.attachments,
    Message.provider_index, Message.body_purged, Message.sealed_links,
)  # fmt: skip


def _claimed(row: Any, settings: Settings) -> Claimed:
    """What to send; the capability links go back into the bodies here and nowhere else."""
    claimed = Claimed(row.id, row.source_event_id, row.recipient_id, row.channel)
    if row.body_purged:
        return replace(claimed, purged=True)
    sealed = capabilities.unseal(settings, row.sealed_links)
    if row.channel == "email":
        return replace(claimed, email=_email_of(row, sealed))
    text = capabilities.restore(row.text, sealed) or ""
    sms = Sms(row.id, row.address, text, row.priority == "urgent")
    return replace(claimed, sms=sms, provider_index=row.provider_index)


def claim(ctx: JobContext, now: dt.datetime, limit: int = CLAIM_LIMIT) -> list[Claimed]:
    """Due messages, oldest first and SMS before emails of the same moment, moved to sending
    (read and written without loading them as ORM objects: this runs per fifty messages)."""
    with transaction(ctx.sessions) as session:
        if senders_of(ctx).due_for_tidying(now):
            release_held(session, now)
            _requeue_stuck(session, now, claim_timeout(ctx.settings.options))
        query = (
            select(*CLAIM_COLUMNS)
            .where(Message.state == "queued", Message.next_attempt_at <= now)
            .order_by(Message.next_attempt_at, Message.created_at, Message.channel.desc())
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = session.execute(query).all()
        if not rows:
            return []
        ids = [row.id for row in rows]
        session.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id.in_(ids))
            .values(state="sending", next_attempt_at=now)
        )
        states.insert_history(
            session, [states.transition(i, "queued", "sending", now) for i in ids]
        )
        return [_claimed(row, ctx.settings) for row in rows]


# --- sending -----------------------------------------------------------------------------------


def _email_of(message: Any, sealed: capabilities.Sealed | None = None) -> Email:
    return Email(
        message_id=message.id,
        to=message.address,
        subject=capabilities.restore(message.subject, sealed) or "Opora",
        text=capabilities.restore(message.text, sealed) or "",
        html=capabilities.restore(message.html, sealed, html=True),
        attachments=tuple(
            Attachment(a["filename"], a["content_type"], a["text"].encode("utf-8"))
            for a in message.attachments or []
        ),
    )


def send_email(sender: EmailSender, email: Email) -> Outcome:
    try:
        return Outcome(sent=sender.send(email))
    except PermanentFailure as exc:
        # A refused recipient is the bounce we can see cheaply (at RCPT time).
        return Outcome(permanent=exc.reason, bounced=exc.reason.startswith("recipient refused"))
    except TemporaryFailure as exc:
        return Outcome(temporary=exc.reason, retry_after=exc.retry_after)
    except Exception as exc:
        return Outcome(temporary=f"sender error: {type(exc).__name__}")


def send_sms(pool: SmsPool, sms: Sms, start: int) -> Outcome:
    """Try the providers in failover order; the first that takes the SMS wins."""
    if not pool.providers:
        return Outcome(permanent="no SMS provider configured")
    problems: list[str] = []
    retry_after = None
    for _, provider in pool.order(start):
        try:
            sent = provider.send(sms)
        except PermanentFailure as exc:
            return Outcome(permanent=f"{provider.name}: {exc.reason}", tried=tuple(problems))
        except TemporaryFailure as exc:
            pool.failed(provider)
            problems.append(f"{provider.name}: {exc.reason}")
            retry_after = exc.retry_after
            continue
        except Exception as exc:
            pool.failed(provider)
            problems.append(f"{provider.name}: {type(exc).__name__}")
            continue
        pool.succeeded(provider)
        return Outcome(sent=sent, tried=tuple(problems))
    return Outcome(temporary="; ".join(problems), retry_after=retry_after, tried=tuple(problems))


def deliver_queued(
    ctx: JobContext,
    limit: int = CLAIM_LIMIT,
    *,
    now: dt.datetime | None = None,
    email_sender: EmailSender | None = None,
    sms: SmsPool | None = None,
) -> int:
    """One run: claim, send, record. Returns how many messages were claimed."""
    claimed = claim(ctx, now or utcnow(), limit)
    if not claimed:
        return 0
    sender, pool = email_sender, sms
    done: list[tuple[Claimed, Outcome]] = []
    try:
        for item in claimed:
            if item.purged:
                outcome = Outcome(permanent="body purged before delivery")
            elif item.email is not None:
                sender = sender or worker_email_sender(ctx)
                outcome = send_email(sender, item.email)
            else:
                assert item.sms is not None
                pool = pool or sms_pool(ctx)
                outcome = send_sms(pool, item.sms, item.provider_index)
            done.append((item, outcome))
            if item.sms is not None or len(done) >= RECORD_EVERY:
                group, done = done, []
                _record(ctx, group, now or utcnow(), len(pool.providers) if pool else 1)
    finally:
        if done:
            _record(ctx, done, now or utcnow(), len(pool.providers) if pool else 1)
    return len(claimed)


def _record(
    ctx: JobContext, done: list[tuple[Claimed, Outcome]], now: dt.datetime, providers: int
) -> None:
    """Write outcomes even through a short database outage: the sends happened, and a message
    left in ``sending`` would go out a second time once its claim expires. Waits at most half
    the claim timeout, so no other run takes the messages back meanwhile."""
    patience = claim_timeout(ctx.settings.options).total_seconds() / 2
    started, pause = time.monotonic(), 0.5
    while True:
        try:
            record_all(ctx, done, now, providers)
            return
        except DBAPIError as exc:
            lost = isinstance(exc, OperationalError) or exc.connection_invalidated
            if not lost or time.monotonic() - started + pause > patience:
                raise
            log.warning("database unavailable; holding the outcomes", extra={"messages": len(done)})
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def deliver_due(ctx: JobContext, budget: float = DRAIN_SECONDS) -> int:
    """Runs until the queue has nothing due (or ``budget`` seconds have gone)."""
    total = 0
    started = time.monotonic()
    while True:
        claimed = deliver_queued(ctx)
        total += claimed
        if claimed < CLAIM_LIMIT or time.monotonic() - started >= budget:
            return total


def history_of(session: Session, message_id: str) -> list[MessageHistory]:
    return list(
        session.scalars(
            select(MessageHistory)
            .where(MessageHistory.message_id == message_id)
            .order_by(MessageHistory.at, MessageHistory.id)
        )
    )


def purge_bodies(session: Session, now: dt.datetime, days: int) -> int:
    """Retention: subject, text, HTML, attachments and links, sealed ones too (an SMS's short
    link stops working) of messages older than ``days`` go; the status and history stay."""
    result = session.execute(
        update(Message)
        .where(Message.created_at < now - dt.timedelta(days=days), Message.body_purged.is_(False))
        .values(
            subject=None,
            text=None,
            html=None,
            attachments=None,
            link=None,
            short_code=None,
            sealed_links=None,
            body_purged=True,
            purged_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
