"""SLA of referrals, counted in working days: the agency acknowledges (leaves ``requested``)
within N working days of the sending, and completes by the referral's deadline, or within M
working days when none was given. Per service code, with a default.

Working days are Monday to Friday in the SLA time zone, minus public holidays (Russia's for
2026-2027 by default), plus weekend days declared working (transferred working Saturdays).
A due moment is the end (local midnight) of the last allowed working day.

The overdue job publishes ``referrals.referral.overdue`` once when a due moment has passed and
``referrals.referral.escalated`` once when the referral is still overdue ``escalate_after``
working days later; the level reached is stored on the referral (``overdue_kind``,
``overdue_level``), so reruns and restarts publish nothing twice. ``now`` is always passed in.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, case, func, not_, or_, select
from sqlalchemy.orm import Session

from services.referrals.events import publish
from services.referrals.models import Referral
from services.referrals.outbound import dispatch
from shared.config import ConfigError

ANY_SERVICE = "*"
# Non-working public holidays of the Russian Federation (Labour Code art. 112), with the day
# off moved when a holiday falls on a weekend. 2026: government decree (Jan 3 -> Jan 9,
# Jan 4 -> Dec 31; Mar 8 -> Mar 9, May 9 -> May 11). 2027: by art. 112 only (May 1 -> May 3,
# May 9 -> May 10, Jun 12 -> Jun 14); the decree's moves of Jan 2-3, 2027 are to be added with
# REFERRALS_HOLIDAYS once published.
_HOLIDAYS_TEXT = """
2026-01-01 2026-01-02 2026-01-03 2026-01-04 2026-01-05 2026-01-06 2026-01-07 2026-01-08
2026-01-09 2026-02-23 2026-03-08 2026-03-09 2026-05-01 2026-05-09 2026-05-11 2026-06-12
2026-11-04 2026-12-31
2027-01-01 2027-01-02 2027-01-03 2027-01-04 2027-01-05 2027-01-06 2027-01-07 2027-01-08
2027-02-23 2027-03-08 2027-05-01 2027-05-03 2027-05-09 2027-05-10 2027-06-12 2027-06-14
2027-11-04
"""
RUSSIAN_HOLIDAYS = tuple(dt.date.fromisoformat(d) for d in _HOLIDAYS_TEXT.split())
OVERDUE, ESCALATED = 1, 2
WAITING_FOR_COMPLETION = ("received", "accepted", "in-progress", "on-hold")


@dataclass(frozen=True)
class WorkCalendar:
    holidays: frozenset[dt.date] = frozenset(RUSSIAN_HOLIDAYS)
    workdays: frozenset[dt.date] = frozenset()  # weekend days that are working

    def is_working(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def add_working_days(self, start: dt.date, n: int) -> dt.date:
        """The ``n``-th working day after ``start`` (``start`` itself when ``n`` is 0)."""
        day, counted = start, 0
        while counted < n:
            day += dt.timedelta(days=1)
            counted += self.is_working(day)
        return day

    def working_days(self, first: dt.date, last: dt.date) -> int:
        """Working days in ``[first, last]``."""
        count, day = 0, first
        while day <= last:
            count += self.is_working(day)
            day += dt.timedelta(days=1)
        return count


@dataclass(frozen=True)
class ServiceSla:
    acknowledge_days: int
    complete_days: int


def _dates(raw: str, name: str) -> frozenset[dt.date]:
    try:
        return frozenset(dt.date.fromisoformat(p.strip()) for p in raw.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"{name}: a comma-separated list of YYYY-MM-DD dates") from None


def _parse_services(raw: str) -> dict[str, ServiceSla]:
    """``counselling=2/10,*=3/20``: service=acknowledge_days/complete_days."""
    table: dict[str, ServiceSla] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        code, _, value = part.partition("=")
        ack, _, done = value.partition("/")
        try:
            sla = ServiceSla(int(ack), int(done))
        except ValueError:
            raise ConfigError(
                f"REFERRALS_SLA: {part!r} is not service=acknowledge_days/complete_days"
            ) from None
        if sla.acknowledge_days < 0 or sla.complete_days < 0:
            raise ConfigError("REFERRALS_SLA: working days cannot be negative")
        table[code.strip()] = sla
    return table


@dataclass(frozen=True)
class SlaRules:
    """``REFERRALS_SLA``, ``REFERRALS_SLA_ESCALATE_AFTER_DAYS``, ``REFERRALS_HOLIDAYS``,
    ``REFERRALS_WORKDAYS``, ``REFERRALS_SLA_TIMEZONE`` (see ``from_env``)."""

    services: Mapping[str, ServiceSla] = field(
        default_factory=lambda: {ANY_SERVICE: ServiceSla(3, 20)}
    )
    escalate_after: int = 2
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    timezone: str = "Europe/Moscow"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SlaRules:
        env = os.environ if env is None else env
        services = {ANY_SERVICE: ServiceSla(3, 20)}
        services.update(_parse_services(env.get("REFERRALS_SLA", "")))
        raw_escalate = env.get("REFERRALS_SLA_ESCALATE_AFTER_DAYS") or "2"
        try:
            escalate_after = int(raw_escalate)
        except ValueError:
            raise ConfigError("REFERRALS_SLA_ESCALATE_AFTER_DAYS must be a whole number") from None
        if escalate_after < 1:
            raise ConfigError("REFERRALS_SLA_ESCALATE_AFTER_DAYS must be at least 1")
        holidays = env.get("REFERRALS_HOLIDAYS")
        calendar = WorkCalendar(
            holidays=_dates(holidays, "REFERRALS_HOLIDAYS")
            if holidays is not None
            else frozenset(RUSSIAN_HOLIDAYS),
            workdays=_dates(env.get("REFERRALS_WORKDAYS", ""), "REFERRALS_WORKDAYS"),
        )
        timezone = env.get("REFERRALS_SLA_TIMEZONE") or "Europe/Moscow"
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"REFERRALS_SLA_TIMEZONE: unknown time zone {timezone!r}") from None
        return cls(services, escalate_after, calendar, timezone)

    @staticmethod
    @functools.cache
    def current() -> SlaRules:
        """The process's rules, read once (create_app reads them first, so a bad value stops
        the start)."""
        return SlaRules.from_env(os.environ)

    def for_service(self, code: str) -> ServiceSla:
        return self.services.get(code) or self.services[ANY_SERVICE]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_day(self, moment: dt.datetime) -> dt.date:
        return moment.astimezone(self.zone).date()

    def end_of(self, day: dt.date) -> dt.datetime:
        """Local midnight after ``day``, in UTC."""
        start = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=self.zone)
        return start.astimezone(dt.UTC)

    def acknowledge_due(self, service_code: str, sent_at: dt.datetime) -> dt.datetime:
        days = self.for_service(service_code).acknowledge_days
        return self.end_of(self.calendar.add_working_days(self.local_day(sent_at), days))

    def complete_due(
        self, service_code: str, deadline: dt.date | None, sent_at: dt.datetime
    ) -> dt.datetime:
        if deadline is not None:
            return self.end_of(deadline)
        days = self.for_service(service_code).complete_days
        return self.end_of(self.calendar.add_working_days(self.local_day(sent_at), days))

    def working_days_overdue(self, due_at: dt.datetime, now: dt.datetime) -> int:
        """Working days begun since ``due_at`` (0 while it has passed only over a weekend)."""
        if now < due_at:
            return 0
        return self.calendar.working_days(self.local_day(due_at), self.local_day(now))


# --- on the referral ---------------------------------------------------------------------------


def start(referral: Referral, rules: SlaRules, now: dt.datetime) -> None:
    """Set the due moments when the referral is sent."""
    referral.acknowledge_due_at = rules.acknowledge_due(referral.service_code, now)
    referral.due_at = rules.complete_due(referral.service_code, referral.deadline, now)
    referral.overdue_kind = None
    referral.overdue_level = 0
    referral.escalated_at = None


def _facts(referral: Referral, kind: str, due_at: dt.datetime, days: int) -> dict[str, Any]:
    return {
        "referral_id": referral.id,
        "number": referral.number,
        "family_id": referral.family_id,
        "agency_id": referral.agency_id,
        "kind": kind,
        "due_at": due_at.isoformat(),
        "days_overdue": days,
    }


def _not_done(kind: str) -> Any:
    return or_(
        Referral.overdue_kind.is_(None),
        Referral.overdue_kind != kind,
        Referral.overdue_level < ESCALATED,
    )


def overdue_candidates(session: Session, now: dt.datetime) -> Iterable[Referral]:
    return session.scalars(
        select(Referral)
        .where(
            or_(
                and_(
                    Referral.status == "requested",
                    Referral.acknowledge_due_at <= now,
                    _not_done("acknowledge"),
                ),
                and_(
                    Referral.status.in_(WAITING_FOR_COMPLETION),
                    Referral.due_at <= now,
                    _not_done("complete"),
                ),
            )
        )
        .order_by(Referral.id)
        .with_for_update(skip_locked=True)
    ).all()


def check_overdue(session: Session, rules: SlaRules, now: dt.datetime) -> list[dict[str, Any]]:
    """Publish what each overdue referral has not yet had: the reminder, the escalation.
    Returns the notices published (for logs and tests)."""
    notices: list[dict[str, Any]] = []
    for referral in overdue_candidates(session, now):
        kind = "acknowledge" if referral.status == "requested" else "complete"
        due_at = referral.acknowledge_due_at if kind == "acknowledge" else referral.due_at
        assert due_at is not None  # the query filtered on it
        if referral.overdue_kind != kind:
            referral.overdue_kind, referral.overdue_level = kind, 0
        days = rules.working_days_overdue(due_at, now)
        facts = _facts(referral, kind, due_at, days)
        if referral.overdue_level < OVERDUE:
            referral.overdue_level = OVERDUE
            publish(session, "referrals.referral.overdue", facts)
            dispatch(session, referral, "referrals.referral.overdue", facts, now=now)
            notices.append({"event": "overdue", **facts})
        if days >= rules.escalate_after and referral.overdue_level < ESCALATED:
            referral.overdue_level = ESCALATED
            referral.escalated_at = now
            escalation = {**facts, "escalated_at": now.isoformat(), "district": referral.district}
            publish(session, "referrals.referral.escalated", escalation)
            notices.append({"event": "escalated", **escalation})
    return notices


def overdue_query(
    now: dt.datetime,
    *,
    kind: str | None = None,
    district: str | None = None,
    agency_id: str | None = None,
    escalated: bool | None = None,
) -> Any:
    """Open referrals past a due moment now (whether or not the job has noticed yet), most
    overdue first; ``escalated`` keeps those escalated (or not yet) for the lateness they show
    now, as ``overdue_view`` reports it."""
    acknowledge = and_(Referral.status == "requested", Referral.acknowledge_due_at <= now)
    complete = and_(Referral.status.in_(WAITING_FOR_COMPLETION), Referral.due_at <= now)
    condition = {"acknowledge": acknowledge, "complete": complete}.get(kind or "")
    stmt = select(Referral).where(
        condition if condition is not None else or_(acknowledge, complete)
    )
    if escalated is not None:
        current_kind = case((Referral.status == "requested", "acknowledge"), else_="complete")
        is_escalated = and_(
            Referral.escalated_at.is_not(None),
            func.coalesce(Referral.overdue_kind, "") == current_kind,
        )
        stmt = stmt.where(is_escalated if escalated else not_(is_escalated))
    if district:
        stmt = stmt.where(Referral.district == district)
    if agency_id:
        stmt = stmt.where(Referral.agency_id == agency_id)
    return stmt.order_by(Referral.acknowledge_due_at, Referral.due_at, Referral.id)


def overdue_view(referral: Referral, rules: SlaRules, now: dt.datetime) -> dict[str, Any]:
    kind = "acknowledge" if referral.status == "requested" else "complete"
    due_at = referral.acknowledge_due_at if kind == "acknowledge" else referral.due_at
    assert due_at is not None
    return {
        "id": referral.id,
        "number": referral.number,
        "family_id": referral.family_id,
        "district": referral.district,
        "agency_id": referral.agency_id,
        "service_code": referral.service_code,
        "urgency": referral.urgency,
        "status": referral.status,
        "kind": kind,
        "due_at": due_at,
        "days_overdue": rules.working_days_overdue(due_at, now),
        "escalated_at": referral.escalated_at if referral.overdue_kind == kind else None,
    }
