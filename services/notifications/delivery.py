"""Delivery: claim queued messages, send them outside any transaction, record the outcome.

A claim moves messages to ``sending`` and commits (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so worker replicas never take the same message); each send then happens with no transaction
open, and its outcome is written in a short transaction of its own with the history row and
the outbox event. A claim a crashed worker left behind goes back to the queue after
STUCK_AFTER. One SMTP session serves a whole run. SMS go to the first healthy provider in
failover order; on a temporary failure the next provider is tried at once, and a provider
failing UNHEALTHY_AFTER times in a row is put last for COOLDOWN seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.notifications import channels as factory
from services.notifications import events, states
from services.notifications.channels.base import (
    Attachment,
    Email,
    EmailSender,
    PermanentFailure,
    Sent,
    Sms,
    SmsProvider,
    TemporaryFailure,
)
from services.notifications.models import Message, MessageHistory, ProviderRef
from shared.db import transaction, utcnow
from shared.worker import JobContext

log = logging.getLogger(__name__)

STUCK_AFTER = dt.timedelta(minutes=10)
UNHEALTHY_AFTER = 3
COOLDOWN = 60.0
CLAIM_LIMIT = 50


# --- SMS providers and their health ------------------------------------------------------------


@dataclass
class SmsPool:
    """The SMS providers in failover order, with a count of consecutive failures each."""

    providers: Sequence[SmsProvider]
    unhealthy_after: int = UNHEALTHY_AFTER
    cooldown: float = COOLDOWN
    clock: Callable[[], float] = time.monotonic
    failures: dict[str, int] = field(default_factory=dict)
    down_until: dict[str, float] = field(default_factory=dict)
    pending_receipts: list[Any] = field(default_factory=list)

    def healthy(self, provider: SmsProvider) -> bool:
        return self.down_until.get(provider.name, 0.0) <= self.clock()

    def order(self, start: int = 0) -> list[tuple[int, SmsProvider]]:
        """From ``start`` round the list; providers marked unhealthy go last."""
        n = len(self.providers)
        ring = [((start + i) % n, self.providers[(start + i) % n]) for i in range(n)]
        return [p for p in ring if self.healthy(p[1])] + [p for p in ring if not self.healthy(p[1])]

    def succeeded(self, provider: SmsProvider) -> None:
        self.failures[provider.name] = 0
        self.down_until.pop(provider.name, None)

    def failed(self, provider: SmsProvider) -> None:
        count = self.failures.get(provider.name, 0) + 1
        self.failures[provider.name] = count
        if count >= self.unhealthy_after:
            self.down_until[provider.name] = self.clock() + self.cooldown
            log.warning("SMS provider marked unhealthy", extra={"provider": provider.name})

    def close(self) -> None:
        for provider in self.providers:
            try:
                provider.close()
            except Exception:
                log.warning("SMS provider did not close cleanly", extra={"provider": provider.name})


_pools: dict[int, SmsPool] = {}
_pools_lock = threading.Lock()


def sms_pool(ctx: JobContext) -> SmsPool:
    """The worker's SMS providers, built on first use (after fork, never at import) and kept,
    so an SMPP session stays bound to receive its delivery receipts."""
    with _pools_lock:
        pool = _pools.get(id(ctx))
        if pool is None:
            pool = SmsPool(factory.build_sms_providers(ctx.settings))
            _pools[id(ctx)] = pool
            weakref.finalize(ctx, _forget_pool, id(ctx))
        return pool


def use_sms_pool(ctx: JobContext, pool: SmsPool) -> None:
    """Tests and tools: give a worker its providers."""
    with _pools_lock:
        old = _pools.get(id(ctx))
        _pools[id(ctx)] = pool
        if old is None:
            weakref.finalize(ctx, _forget_pool, id(ctx))


def _forget_pool(key: int) -> None:
    pool = _pools.pop(key, None)
    if pool is not None:
        pool.close()


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


def _requeue_stuck(session: Session, now: dt.datetime) -> None:
    stuck = session.scalars(
        select(Message).where(
            Message.state == "sending", Message.next_attempt_at < now - STUCK_AFTER
        )
    ).all()
    for message in stuck:
        session.add(states.move(message, "queued", now, detail="claim expired; sending again"))
        message.next_attempt_at = now


def claim(ctx: JobContext, now: dt.datetime, limit: int = CLAIM_LIMIT) -> list[str]:
    with transaction(ctx.sessions) as session:
        release_held(session, now)
        _requeue_stuck(session, now)
        query = (
            select(Message)
            .where(Message.state == "queued", Message.next_attempt_at <= now)
            .order_by(Message.next_attempt_at, Message.created_at)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        claimed = session.scalars(query).all()
        for message in claimed:
            session.add(states.move(message, "sending", now))
            message.next_attempt_at = now
        return [m.id for m in claimed]


# --- sending -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    sent: Sent | None = None
    temporary: str | None = None
    permanent: str | None = None
    bounced: bool = False
    retry_after: float | None = None
    tried: tuple[str, ...] = ()


def _email_of(message: Message) -> Email:
    return Email(
        message_id=message.id,
        to=message.address,
        subject=message.subject or "Opora",
        text=message.text or "",
        html=message.html,
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
    """One run: claim, send, mark. Returns how many messages were claimed."""
    ids = claim(ctx, now or utcnow(), limit)
    if not ids:
        return 0
    sender = email_sender
    pool = sms
    try:
        for message_id in ids:
            with ctx.sessions() as session:
                message = session.get(Message, message_id)
                assert message is not None
                if message.body_purged:
                    outcome = Outcome(permanent="body purged before delivery")
                elif message.channel == "email":
                    if sender is None:
                        sender = factory.build_email_sender(ctx.settings)
                    email = _email_of(message)
                    session.close()  # nothing open while we talk to the server
                    outcome = send_email(sender, email)
                else:
                    pool = pool or sms_pool(ctx)
                    text = Sms(
                        message.id,
                        message.address,
                        message.text or "",
                        message.priority == "urgent",
                    )
                    start = message.provider_index
                    session.close()
                    outcome = send_sms(pool, text, start)
            record(ctx, message_id, outcome, now or utcnow(), len(pool.providers) if pool else 1)
    finally:
        if sender is not None and email_sender is None:
            sender.close()
    return len(ids)


def record(
    ctx: JobContext, message_id: str, outcome: Outcome, now: dt.datetime, providers: int = 1
) -> None:
    """Write one send's outcome: sent, back to the queue with a back-off, or failed."""
    with transaction(ctx.sessions) as session:
        message = session.get(Message, message_id)
        assert message is not None
        tried = "; ".join(outcome.tried)
        if outcome.sent is not None:
            sent = outcome.sent
            detail = f"{sent.segments} part(s)" + (f"; failed over after {tried}" if tried else "")
            session.add(states.move(message, "sent", now, provider=sent.provider, detail=detail))
            message.provider = sent.provider
            message.provider_message_id = (
                sent.provider_message_ids[0] if sent.provider_message_ids else None
            )
            message.segments = sent.segments
            message.last_error = None
            message.attempts += 1
            for ref in dict.fromkeys(sent.provider_message_ids):
                session.merge(
                    ProviderRef(
                        provider=sent.provider, provider_message_id=ref, message_id=message.id
                    )
                )
            publish_outcome(session, "notifications.message.sent", message)
            return
        message.attempts += 1
        if outcome.permanent is not None or states.gives_up(message.attempts):
            reason = (
                outcome.permanent
                or f"gave up after {message.attempts} attempts: {outcome.temporary}"
            )
            to = "bounced" if outcome.bounced else "failed"
            session.add(states.move(message, to, now, detail=reason))
            message.last_error = reason[:500]
            publish_outcome(session, "notifications.message.failed", message, reason=reason[:500])
            return
        delay = states.backoff(message.attempts)
        if outcome.retry_after:
            delay = max(delay, outcome.retry_after)
        if message.channel == "sms" and providers > 1:
            message.provider_index = (message.provider_index + 1) % providers
        message.next_attempt_at = now + dt.timedelta(seconds=delay)
        message.last_error = (outcome.temporary or "")[:500]
        session.add(
            states.move(
                message, "queued", now,
                detail=f"temporary failure: {outcome.temporary}; retry in {delay:.0f}s",
            )
        )  # fmt: skip
        log.warning(
            "message not sent; will retry",
            extra={
                "message_id": message.id,
                "channel": message.channel,
                "attempt": message.attempts,
            },
        )


def publish_outcome(session: Session, name: str, message: Message, **extra: Any) -> None:
    events.publish(
        session,
        name,
        {
            "message_id": message.id,
            "source_event_id": message.source_event_id,
            "channel": message.channel,
            "recipient_id": message.recipient_id,
            "state": message.state,
            **extra,
        },
    )


def history_of(session: Session, message_id: str) -> list[MessageHistory]:
    return list(
        session.scalars(
            select(MessageHistory)
            .where(MessageHistory.message_id == message_id)
            .order_by(MessageHistory.at, MessageHistory.id)
        )
    )


def purge_bodies(session: Session, now: dt.datetime, days: int) -> int:
    """Retention: subject, text, HTML and attachments of messages older than ``days`` go; the
    status record and its history stay."""
    result = session.execute(
        update(Message)
        .where(Message.created_at < now - dt.timedelta(days=days), Message.body_purged.is_(False))
        .values(
            subject=None, text=None, html=None, attachments=None, body_purged=True, purged_at=now
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
