"""Answering a referral by a signed link, for an agency with no system and no account (a
charity, a culture department): the link names the referral, the referral names the agency,
and the answer goes through the same lifecycle steps as any other, by ``link:<agency_id>``.

An answer may take the steps in between for the recipient: ``accept`` of a ``requested``
referral records ``received`` then ``accepted``, ``complete`` of an ``accepted`` one records
``in-progress`` then ``completed``. Opening the link (GET) changes nothing: mail scanners
fetch links too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from services.referrals import domain
from services.referrals.domain import OPEN_STATUSES, Actor
from services.referrals.models import AnswerLinkFloor, Referral
from shared.config import ConfigError, Settings
from shared.errors import Conflict, Unauthorized

PURPOSE = "referral"
DEFAULT_DAYS = 14
ACTIONS = ("accept", "reject", "start", "complete")
# action -> the steps it may take, the last one being the action's own
STEPS: dict[str, dict[str, tuple[str, ...]]] = {
    "accept": {"requested": ("received", "accepted"), "received": ("accepted",)},
    "reject": {"requested": ("received", "rejected"), "received": ("rejected",)},
    "start": {"accepted": ("in-progress",), "on-hold": ("in-progress",)},
    "complete": {"accepted": ("in-progress", "completed"), "in-progress": ("completed",)},
}


def link_days(env: Mapping[str, str]) -> int:
    """``REFERRALS_LINK_DAYS``: how long a link works (default 14 days)."""
    raw = env.get("REFERRALS_LINK_DAYS") or str(DEFAULT_DAYS)
    try:
        days = int(raw)
    except ValueError:
        raise ConfigError(f"REFERRALS_LINK_DAYS must be a whole number, got {raw!r}") from None
    if days < 1:
        raise ConfigError("REFERRALS_LINK_DAYS must be at least 1")
    return days


def link_url(settings: Settings, referral_id: str, token: str) -> str:
    """The shape notifications builds too: keep them the same."""
    return f"{settings.public_url}/referrals/{referral_id}/respond?token={token}"


def raise_floor(session: Session, referral_id: str, issued_from: dt.datetime) -> None:
    """Links of the referral issued before ``issued_from`` stop working (a resend's fresh link
    replaced them); the floor only rises, whatever order the resends' events come in."""
    floor = session.get(AnswerLinkFloor, referral_id, with_for_update=True)
    if floor is None:
        session.add(AnswerLinkFloor(referral_id=referral_id, issued_from=issued_from))
    elif issued_from > floor.issued_from:
        floor.issued_from = issued_from


def check_not_replaced(session: Session, referral_id: str, issued_at: dt.datetime) -> None:
    floor = session.get(AnswerLinkFloor, referral_id)
    if floor is not None and issued_at < floor.issued_from:
        raise Unauthorized("the link was replaced by a newer one: use the latest message")


def actor_for(referral: Referral) -> Actor:
    return Actor(
        id=f"link:{referral.agency_id}",
        agency_id=referral.agency_id,
        sender=False,
        agency_member=True,
        may_override_consent=False,
    )


def allowed_actions(referral: Referral) -> list[str]:
    return [a for a in ACTIONS if referral.status in STEPS[a]]


def view(referral: Referral) -> dict[str, Any]:
    """Only what the referral carries: no family file, not even the family's registry id."""
    return {
        "id": referral.id,
        "number": referral.number,
        "family_number": referral.family_number,
        "service_code": referral.service_code,
        "reason": referral.reason,
        "urgency": referral.urgency,
        "deadline": referral.deadline,
        "contact": referral.contact,
        "status": referral.status,
        "acknowledge_due_at": referral.acknowledge_due_at,
        "due_at": referral.due_at,
        "actions": allowed_actions(referral),
    }


def respond(
    session: Session,
    referral: Referral,
    action: str,
    now: dt.datetime,
    *,
    reason: str | None = None,
    outcome: str | None = None,
) -> Referral:
    if referral.status not in OPEN_STATUSES or referral.status == "draft":
        raise Conflict(
            f"the referral is {referral.status}: it takes no more answers", code="referral-final"
        )
    steps = STEPS[action].get(referral.status)
    if steps is None:
        allowed = ", ".join(allowed_actions(referral)) or "none"
        raise Conflict(
            f"a {referral.status} referral cannot be answered with {action}; allowed: {allowed}",
            code="illegal-transition",
        )
    who = actor_for(referral)
    # what the last step needs (a reason, an outcome) is checked before anything is written
    before_last = steps[-2] if len(steps) > 1 else referral.status
    domain.check_transition(before_last, steps[-1], reason=reason, outcome=outcome)
    for step in steps[:-1]:
        domain.transition(session, who, referral, step, now)
    domain.transition(session, who, referral, steps[-1], now, reason=reason, outcome=outcome)
    return referral
