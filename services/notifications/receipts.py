"""Delivery receipts: SMPP deliver_sm (polled from the providers) and HTTP gateway callbacks
(the API) move a sent message to delivered, failed or bounced."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.notifications import states
from services.notifications.models import Message, ProviderRef
from services.notifications.outcomes import publish_outcome
from services.notifications.senders import SmsPool, sms_pool
from shared.db import transaction, utcnow
from shared.worker import JobContext

log = logging.getLogger(__name__)

RECEIPT_KEEP = 600.0  # seconds an unmatched receipt waits for its message to be marked sent


def apply_receipt(session: Session, receipt: Any, now: dt.datetime) -> Message | None:
    """Move a sent message on a provider's receipt; None when no message has that id (yet).

    Multi-part SMS: delivered once every part is; failed or bounced on the first part that is.
    """
    ref = session.get(ProviderRef, (receipt.provider, receipt.provider_message_id))
    if ref is None:  # a test-mode or renamed provider: the id alone, when it is unambiguous
        refs = session.scalars(
            select(ProviderRef).where(
                ProviderRef.provider_message_id == receipt.provider_message_id
            )
        ).all()
        ref = refs[0] if len(refs) == 1 else None
    if ref is None:
        return None
    message = session.get(Message, ref.message_id)
    if message is None:
        return None
    ref.state = receipt.state
    ref.at = receipt.at or now
    if receipt.state == "delivered":
        parts = session.scalars(
            select(ProviderRef.state).where(ProviderRef.message_id == message.id)
        ).all()
        if any(state != "delivered" for state in parts) or not states.can_move(
            message.state, "delivered"
        ):
            return message
        to = "delivered"
    else:
        to = receipt.state
        if not states.can_move(message.state, to):
            return message
    detail = "receipt" + (f": {receipt.error}" if receipt.error else "")
    session.add(states.move(message, to, now, provider=receipt.provider, detail=detail))
    if to in ("failed", "bounced"):
        message.last_error = (receipt.error or to)[:500]
        publish_outcome(session, "notifications.message.failed", message, reason=message.last_error)
    return message


def poll_receipts(
    ctx: JobContext, *, now: dt.datetime | None = None, pool: SmsPool | None = None
) -> int:
    """Take the providers' pending receipts (SMPP deliver_sm, test mode) and apply them;
    returns how many moved a message. A receipt racing ahead of its "sent" mark is kept and
    tried again next run."""
    pool = pool or sms_pool(ctx)
    now = now or utcnow()
    fresh: list[tuple[float, Any]] = []
    for provider in pool.providers:
        try:
            fresh += [(time.monotonic(), r) for r in provider.receipts()]
        except Exception as exc:
            log.warning(
                "receipts not read", extra={"provider": provider.name, "error": type(exc).__name__}
            )
    waiting = pool.pending_receipts + fresh
    if not waiting:
        return 0
    applied = 0
    keep = []
    with transaction(ctx.sessions) as session:
        for taken_at, receipt in waiting:
            if apply_receipt(session, receipt, now) is not None:
                applied += 1
            elif time.monotonic() - taken_at < RECEIPT_KEEP:
                keep.append((taken_at, receipt))
    pool.pending_receipts = keep
    return applied
