"""Signals in (early detection): an agency reports a family in trouble; a coordinator triages it
within the priority's deadline (red 2 h, amber 6 h, green 24 h by default), or the signal is
escalated. Red signals are announced at once.

``now`` is always passed in, so the SLA is tested with a controlled clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.referrals.events import publish
from services.referrals.models import SIGNAL_PRIORITIES, KnownFamily, Signal
from shared.config import ConfigError
from shared.db import get_or_404
from shared.errors import Conflict, RuleViolation

DEFAULT_SLA_HOURS = {"red": 2.0, "amber": 6.0, "green": 24.0}


@dataclass(frozen=True)
class SignalRules:
    """``REFERRALS_SIGNAL_SLA_HOURS="red=2,amber=6,green=24"`` overrides the deadlines."""

    sla_hours: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SLA_HOURS))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SignalRules:
        raw = env.get("REFERRALS_SIGNAL_SLA_HOURS", "")
        hours = dict(DEFAULT_SLA_HOURS)
        for part in filter(None, (p.strip() for p in raw.split(","))):
            name, _, value = part.partition("=")
            name = name.strip()
            if name not in SIGNAL_PRIORITIES:
                raise ConfigError(f"REFERRALS_SIGNAL_SLA_HOURS: unknown priority {name!r}")
            try:
                hours[name] = float(value)
            except ValueError:
                raise ConfigError(
                    f"REFERRALS_SIGNAL_SLA_HOURS: {part!r} is not name=hours"
                ) from None
            if hours[name] <= 0:
                raise ConfigError("REFERRALS_SIGNAL_SLA_HOURS: hours must be positive")
        return cls(hours)

    def deadline(self, priority: str, received_at: dt.datetime) -> dt.datetime:
        return received_at + dt.timedelta(hours=self.sla_hours[priority])


def _facts(signal: Signal) -> dict[str, Any]:
    return {
        "signal_id": signal.id,
        "district": signal.district,
        "priority": signal.priority,
        "reporter_agency_id": signal.reporter_agency_id,
        "triage_due_at": signal.triage_due_at.isoformat(),
    }


def get_signal(session: Session, signal_id: str, *, for_update: bool = False) -> Signal:
    return get_or_404(session, Signal, signal_id, for_update=for_update)


def report(
    session: Session,
    data: dict[str, Any],
    *,
    reporter_id: str,
    reporter_agency_id: str | None,
    now: dt.datetime,
    rules: SignalRules,
) -> Signal:
    if data["observed_at"] > now + dt.timedelta(minutes=5):
        raise RuleViolation(
            "the observation lies in the future", errors={"observed_at": ["in the future"]}
        )
    signal = Signal(
        reporter_id=reporter_id,
        reporter_agency_id=reporter_agency_id,
        district=data["district"],
        observed=data["observed"],
        observed_at=data["observed_at"],
        family=data["family"],
        priority=data["priority"],
        status="new",
        triage_due_at=rules.deadline(data["priority"], now),
        family_id=data["family"].get("family_id"),
        created_at=now,
    )
    session.add(signal)
    session.flush()
    publish(session, "referrals.signal.received", _facts(signal))
    if signal.priority == "red":
        publish(session, "referrals.signal.urgent", _facts(signal))
    return signal


def _open(signal: Signal) -> None:
    if signal.status != "new":
        raise Conflict(f"the signal is already {signal.status}", code="signal-triaged")


def accept(
    session: Session, signal: Signal, *, by: str, family_id: str | None, now: dt.datetime
) -> Signal:
    """The registry opens or attaches a case from ``referrals.signal.accepted``. A family id
    must be one the registry announced (its family events): checked here, not left to fail in
    the registry after the coordinator was told it worked."""
    _open(signal)
    if family_id and session.get(KnownFamily, family_id) is None:
        raise RuleViolation(
            "the registry has announced no family with this id",
            errors={"family_id": ["no such family in the registry"]},
        )
    signal.status = "accepted"
    signal.decided_at = now
    signal.decided_by = by
    if family_id:
        signal.family_id = family_id
    publish(
        session,
        "referrals.signal.accepted",
        {
            **_facts(signal),
            "family_id": signal.family_id,
            "family": signal.family,
            "observed_at": signal.observed_at.isoformat(),
            "accepted_by": by,
            "at": now.isoformat(),
        },
    )
    return signal


def return_to_triage(session: Session, data: dict[str, Any], now: dt.datetime) -> Signal | None:
    """``registry.signal.refused``: the accepted signal goes back to ``new`` with the registry's
    reason, for the coordinator to accept again (another family) or dismiss. Only the acceptance
    it answers is undone: a refusal that arrives after the signal was triaged again changes
    nothing (returns None)."""
    signal = session.get(Signal, data["signal_id"], with_for_update=True)
    if signal is None or signal.status != "accepted" or signal.decided_at != data["accepted_at"]:
        return None
    signal.status = "new"
    signal.refusal_reason = data["reason"]
    signal.refusal_detail = data["detail"]
    signal.refused_at = now
    signal.decided_at = None
    signal.decided_by = None
    publish(
        session,
        "referrals.signal.returned",
        {**_facts(signal), "reason": data["reason"], "at": now.isoformat()},
    )
    return signal


def dismiss(session: Session, signal: Signal, *, by: str, reason: str, now: dt.datetime) -> Signal:
    _open(signal)
    if not reason.strip():
        raise RuleViolation("a dismissal needs a reason", errors={"reason": ["required"]})
    signal.status = "dismissed"
    signal.decided_at = now
    signal.decided_by = by
    signal.dismiss_reason = reason
    publish(
        session,
        "referrals.signal.dismissed",
        {**_facts(signal), "reason": reason, "dismissed_by": by, "at": now.isoformat()},
    )
    return signal


def escalate_overdue(session: Session, now: dt.datetime) -> list[Signal]:
    """Untriaged signals past their deadline, each escalated once."""
    overdue = session.scalars(
        select(Signal)
        .where(
            Signal.status == "new",
            Signal.escalated_at.is_(None),
            Signal.triage_due_at <= now,
        )
        .order_by(Signal.triage_due_at)
        .with_for_update(skip_locked=True)
    ).all()
    for signal in overdue:
        signal.escalated_at = now
        publish(
            session,
            "referrals.signal.escalated",
            {**_facts(signal), "escalated_at": now.isoformat()},
        )
    return list(overdue)
