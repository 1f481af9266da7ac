"""A message's state machine: the legal moves, and a history row for every move (no I/O).

queued -> sending -> sent -> delivered | failed | bounced. ``held`` waits for the end of the
quiet hours (then queued) or for the person's digest (then delivered, inside the digest).
A temporary failure puts a sending message back to queued with a back-off; a claim that a
crashed worker left in ``sending`` is put back to queued too.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from services.notifications.models import MESSAGE_STATES, Message, MessageHistory
from shared.backoff import backoff_seconds

TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"sending", "held", "failed"}),
    "held": frozenset({"queued", "delivered", "failed"}),
    "sending": frozenset({"sent", "queued", "failed", "bounced"}),
    "sent": frozenset({"delivered", "failed", "bounced"}),
    "delivered": frozenset({"bounced"}),  # a late bounce after the server had accepted it
    "failed": frozenset(),
    "bounced": frozenset(),
}
assert set(TRANSITIONS) == set(MESSAGE_STATES)
FINAL = frozenset(s for s, moves in TRANSITIONS.items() if not moves)

MAX_ATTEMPTS = 6
BASE_DELAY = 5.0  # seconds
MAX_DELAY = 3600.0


class IllegalTransition(ValueError):
    """A move the machine does not allow (e.g. delivered -> sending)."""


def can_move(current: str | None, to: str) -> bool:
    if current is None:
        return to in ("queued", "held")
    return to in TRANSITIONS.get(current, frozenset())


def move(
    message: Message,
    to: str,
    now: dt.datetime,
    *,
    provider: str | None = None,
    detail: str | None = None,
) -> MessageHistory:
    """Set ``message.state`` to ``to`` and return the history row to add; raises on an illegal
    move. A new message (state None) starts as queued or held."""
    row = transition(message.id, message.state, to, now, provider, detail)
    message.state = to
    if to == "sent":
        message.sent_at = now
    elif to == "delivered":
        message.delivered_at = now
    return MessageHistory(**row)


def transition(
    message_id: str,
    current: str | None,
    to: str,
    now: dt.datetime,
    provider: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """The history row of a legal move, as values for :func:`insert_history` (for code that
    writes the state itself); raises on an illegal one."""
    if to not in MESSAGE_STATES:
        raise IllegalTransition(f"unknown state {to!r}")
    if not can_move(current, to):
        raise IllegalTransition(f"a message cannot go from {current} to {to}")
    return {
        "message_id": message_id,
        "at": now,
        "from_state": current,
        "to_state": to,
        "provider": provider,
        "detail": (detail or None) and detail[:500],
    }


def insert_history(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Many history rows in one executemany: added as objects one by one, each would be an
    INSERT with RETURNING of its own (the ORM needs the generated id back)."""
    if rows:
        session.execute(insert(MessageHistory), list(rows))


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: exponential, capped, with +-50% jitter."""
    return backoff_seconds(attempts, base=BASE_DELAY, cap=MAX_DELAY, draw=(rng or random).random())


def gives_up(attempts: int) -> bool:
    return attempts >= MAX_ATTEMPTS
