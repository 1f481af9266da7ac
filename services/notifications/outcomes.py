"""What a send did, written down: the message's state, its history row, the provider's ids
(for receipts) and the outbox event, for a group of sends in one short transaction.

Sent is what nearly every send ends in, so it is written without loading the messages: one
UPDATE for the group, one INSERT each for the history rows, the provider ids and the events.
A message no longer in ``sending`` (its claim expired and another run took it) keeps what
that run writes. Failures go through the ORM one by one: the back-off, the next provider,
giving up.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from services.notifications import events, states
from services.notifications.channels.base import Email, Sent, Sms
from services.notifications.models import MESSAGES, Message, ProviderRef
from shared.db import transaction
from shared.worker import JobContext

log = logging.getLogger(__name__)

SENT = "notifications.message.sent"
FAILED = "notifications.message.failed"


@dataclass(frozen=True)
class Claimed:
    """A claimed message: what to send and what its events name, read in the claim."""

    id: str
    source_event_id: str
    recipient_id: str
    channel: str
    email: Email | None = None
    sms: Sms | None = None
    provider_index: int = 0
    purged: bool = False


@dataclass(frozen=True)
class Outcome:
    sent: Sent | None = None
    temporary: str | None = None
    permanent: str | None = None
    bounced: bool = False
    retry_after: float | None = None
    tried: tuple[str, ...] = ()


def record_all(
    ctx: JobContext,
    done: Sequence[tuple[Claimed, Outcome]],
    now: dt.datetime,
    providers: int = 1,
) -> None:
    """Write a group of sends' outcomes in one transaction."""
    if not done:
        return
    with transaction(ctx.sessions) as session:
        ids = [claimed.id for claimed, _ in done]
        query = select(Message.id, Message.state).where(Message.id.in_(ids))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        current = {row.id: row.state for row in session.execute(query)}
        ours = [(c, o) for c, o in done if current.get(c.id) == "sending"]
        if len(ours) < len(done):
            log.warning(
                "outcomes of messages no longer sending were not written",
                extra={"messages": len(done) - len(ours)},
            )
        history: list[dict[str, Any]] = []
        published: list[tuple[str, dict[str, Any]]] = []
        _sent(session, [(c, o) for c, o in ours if o.sent is not None], now, history, published)
        failed = {c.id: o for c, o in ours if o.sent is None}
        if failed:
            for message in session.scalars(select(Message).where(Message.id.in_(failed))):
                name, moved = _not_sent(message, failed[message.id], now, providers)
                history.append(moved)
                if name is not None:
                    published.append((name, outcome_data(message)))
        states.insert_history(session, history)
        events.publish_all(session, published)


def _sent(
    session: Session,
    sent: Sequence[tuple[Claimed, Outcome]],
    now: dt.datetime,
    history: list[dict[str, Any]],
    published: list[tuple[str, dict[str, Any]]],
) -> None:
    if not sent:
        return
    ids = [claimed.id for claimed, _ in sent]
    known = {
        (row.provider, row.provider_message_id)
        for row in session.execute(
            select(ProviderRef.provider, ProviderRef.provider_message_id).where(
                ProviderRef.message_id.in_(ids)
            )
        )
    }
    rows, refs = [], []
    for claimed, outcome in sent:
        assert outcome.sent is not None
        receipt = outcome.sent
        tried = "; ".join(outcome.tried)
        detail = f"{receipt.segments} part(s)" + (f"; failed over after {tried}" if tried else "")
        history.append(
            states.transition(claimed.id, "sending", "sent", now, receipt.provider, detail)
        )
        first = receipt.provider_message_ids[0] if receipt.provider_message_ids else None
        rows.append({"b_id": claimed.id, "b_provider": receipt.provider, "b_ref": first,
                     "b_segments": receipt.segments})  # fmt: skip
        for ref in dict.fromkeys(receipt.provider_message_ids):
            if (receipt.provider, ref) not in known:  # a message sent again keeps its refs
                known.add((receipt.provider, ref))
                refs.append({"provider": receipt.provider, "provider_message_id": ref,
                             "message_id": claimed.id})  # fmt: skip
        published.append((SENT, {
            "message_id": claimed.id, "source_event_id": claimed.source_event_id,
            "channel": claimed.channel, "recipient_id": claimed.recipient_id, "state": "sent",
        }))  # fmt: skip
    session.execute(
        MESSAGES.update()
        .where(MESSAGES.c.id == bindparam("b_id"))
        .values(
            state="sent", sent_at=now, provider=bindparam("b_provider"),
            provider_message_id=bindparam("b_ref"), segments=bindparam("b_segments"),
            last_error=None, attempts=MESSAGES.c.attempts + 1,
        ),
        rows,
    )  # fmt: skip
    if refs:
        session.execute(insert(ProviderRef), refs)


def _not_sent(
    message: Message, outcome: Outcome, now: dt.datetime, providers: int
) -> tuple[str | None, dict[str, Any]]:
    """Back to the queue with a back-off (on the next SMS provider), or failed / bounced."""
    message.attempts += 1
    if outcome.permanent is not None or states.gives_up(message.attempts):
        reason = (
            outcome.permanent or f"gave up after {message.attempts} attempts: {outcome.temporary}"
        )
        moved = _move(message, "bounced" if outcome.bounced else "failed", now, reason)
        message.last_error = reason[:500]
        return FAILED, moved
    delay = states.backoff(message.attempts)
    if outcome.retry_after:
        delay = max(delay, outcome.retry_after)
    if message.channel == "sms" and providers > 1:
        message.provider_index = (message.provider_index + 1) % providers
    message.next_attempt_at = now + dt.timedelta(seconds=delay)
    message.last_error = (outcome.temporary or "")[:500]
    moved = _move(
        message, "queued", now, f"temporary failure: {outcome.temporary}; retry in {delay:.0f}s"
    )
    log.warning(
        "message not sent; will retry",
        extra={"message_id": message.id, "channel": message.channel, "attempt": message.attempts},
    )
    return None, moved


def _move(message: Message, to: str, now: dt.datetime, detail: str) -> dict[str, Any]:
    row = states.transition(message.id, message.state, to, now, detail=detail)
    message.state = to
    return row


def outcome_data(message: Message, **extra: Any) -> dict[str, Any]:
    """A sent or failed event's data: ids and states, the failure's reason; never an address."""
    data = {
        "message_id": message.id,
        "source_event_id": message.source_event_id,
        "channel": message.channel,
        "recipient_id": message.recipient_id,
        "state": message.state,
        **extra,
    }
    if message.state in ("failed", "bounced"):
        data.setdefault("reason", message.last_error or message.state)
    return data


def publish_outcome(session: Session, name: str, message: Message, **extra: Any) -> None:
    events.publish(session, name, outcome_data(message, **extra))
