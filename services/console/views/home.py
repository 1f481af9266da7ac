"""Home, "what needs me": per role, counters computed from the services' data (nothing stored),
each opening the pre-filtered list it counts. One service down empties only its panel."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import Blueprint, render_template
from flask_babel import gettext as _

from services.console.app import console, console_clients, current_person
from services.console.clients import Outcome, gather
from services.console.labels import label
from services.console.people import Person
from shared.auth.roles import AGENCY_STAFF, COORDINATOR, LEAD_SPECIALIST

home = Blueprint("home", __name__)

PRIORITIES = ("red", "amber", "green")


@dataclass
class Counter:
    title: str
    count: int
    url: str
    tone: str = "neutral"
    note: str | None = None


@dataclass
class Panel:
    """One part of the home page, fed by one service."""

    key: str
    title: str
    service: str
    counters: list[Counter] = field(default_factory=list)
    down: bool = False
    refused: str | None = None


def _link(path: str, **params: Any) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(clean)}" if clean else path


def time_left(due: dt.datetime, now: dt.datetime) -> str:
    """«1 ч 20 мин» left, or «просрочен на 35 мин»."""
    seconds = int((due - now).total_seconds())
    minutes = abs(seconds) // 60
    text = (
        _("%(h)s ч %(m)s мин", h=minutes // 60, m=minutes % 60)
        if minutes >= 60
        else _("%(m)s мин", m=minutes)
    )
    return text if seconds >= 0 else _("просрочен на %(t)s", t=text)


def signal_counters(signals: list[dict[str, Any]], now: dt.datetime) -> list[Counter]:
    counters = []
    for priority in PRIORITIES:
        mine = [s for s in signals if s.get("priority") == priority]
        due = sorted(dt.datetime.fromisoformat(s["triage_due_at"]) for s in mine)
        note = _("ближайший срок: %(left)s", left=time_left(due[0], now)) if due else None
        counters.append(
            Counter(
                title=_(
                    "Сигналы к разбору: %(priority)s", priority=label("signal_priority", priority)
                ),
                count=len(mine),
                url=_link("/signals", status="new", priority=priority),
                tone=priority if mine else "neutral",
                note=note,
            )
        )
    return counters


def _panels(person: Person, today: dt.date, now: dt.datetime) -> list[Panel]:
    clients = console_clients()
    district = person.districts[0] if person.districts else None
    tomorrow = today + dt.timedelta(days=1)
    calls: dict[str, Callable[[], Any]] = {}
    build: dict[str, Callable[[Any], Panel]] = {}
    coordinator = person.has_role(COORDINATOR)
    specialist = person.has_role(LEAD_SPECIALIST)
    agency = person.has_role(AGENCY_STAFF) and person.agency_id

    if coordinator:
        calls["signals"] = lambda: clients.referrals.new_signals(district=district)
        build["signals"] = lambda signals: Panel(
            "signals", _("Сигналы"), "referrals", signal_counters(signals, now)
        )
        calls["intakes"] = lambda: clients.registry.pending_intakes(district=district)
        build["intakes"] = lambda n: Panel(
            "intakes",
            _("Поступившие семьи"),
            "registry",
            [
                Counter(
                    _("Возможные дубли к решению"),
                    n,
                    _link("/families", intake="pending"),
                    "amber" if n else "neutral",
                )
            ],
        )
        calls["approvals"] = lambda: clients.registry.approvals_waiting(district=district)
        build["approvals"] = lambda n: Panel(
            "approvals",
            _("Согласования"),
            "registry",
            [
                Counter(
                    _("Ждут моего решения"),
                    n,
                    _link("/approvals", district=district),
                    "amber" if n else "neutral",
                )
            ],
        )
        calls["overdue-referrals"] = lambda: clients.referrals.overdue_referrals(district=district)
        build["overdue-referrals"] = lambda counts: Panel(
            "overdue-referrals",
            _("Сроки направлений"),
            "referrals",
            [
                Counter(
                    _("Просроченные направления"),
                    counts[0],
                    _link("/referrals", view="overdue"),
                    "red" if counts[0] else "neutral",
                ),
                Counter(
                    _("Эскалированные направления"),
                    counts[1],
                    _link("/referrals", view="escalated"),
                    "red" if counts[1] else "neutral",
                ),
            ],
        )
    if coordinator or specialist or agency:
        scope: dict[str, Any] = (
            {"district": district}
            if coordinator
            else {"lead_specialist": person.subject}
            if specialist
            else {"agency_id": person.agency_id}
        )
        next_monday = today + dt.timedelta(days=7 - today.weekday())

        def measures() -> tuple[int, int]:
            overdue = clients.registry.overdue_measures(**scope)
            by_monday = clients.registry.overdue_measures(as_of=next_monday, **scope)
            return overdue, by_monday - overdue

        calls["measures"] = measures
        build["measures"] = lambda counts: Panel(
            "measures",
            _("Мероприятия планов"),
            "registry",
            [
                Counter(
                    _("Просроченные мероприятия"),
                    counts[0],
                    _link("/cases", measures="overdue", **scope),
                    "red" if counts[0] else "neutral",
                ),
                Counter(
                    _("Срок на этой неделе"),
                    counts[1],
                    _link("/cases", measures="due", until=next_monday.isoformat(), **scope),
                    "amber" if counts[1] else "neutral",
                ),
            ],
        )
    if agency:
        agency_id = str(person.agency_id)
        calls["referrals"] = lambda: clients.referrals.referrals_awaiting(agency_id)
        build["referrals"] = lambda n: Panel(
            "referrals",
            _("Направления"),
            "referrals",
            [
                Counter(
                    _("Направления ждут ответа"),
                    n,
                    _link("/referrals", box="inbox", status="requested"),
                    "amber" if n else "neutral",
                )
            ],
        )
    person_filter = None if coordinator else person.subject
    calls["raids"] = lambda: clients.raids.raids_on(tomorrow, person_id=person_filter)
    build["raids"] = lambda n: Panel(
        "raids",
        _("Рейды"),
        "raids",
        [
            Counter(
                _("Рейды завтра"),
                n,
                _link("/raids", date=tomorrow.isoformat(), person=person_filter),
            )
        ],
    )
    outcomes = gather(calls)
    return [_panel(name, outcomes[name], build[name]) for name in calls]


def _panel(name: str, outcome: Outcome[Any], build: Callable[[Any], Panel]) -> Panel:
    if outcome.ok:
        return build(outcome.value)
    empty = build({"signals": [], "measures": (0, 0), "overdue-referrals": (0, 0)}.get(name, 0))
    empty.counters = []
    empty.down = outcome.down is not None
    empty.refused = outcome.refused.detail or outcome.refused.title if outcome.refused else None
    return empty


@home.route("/")
def index() -> Any:
    person = current_person()
    assert person is not None
    zone = ZoneInfo(console().config.timezone)
    now = dt.datetime.now(dt.UTC)
    panels = _panels(person, now.astimezone(zone).date(), now)
    return render_template("home/index.html", panels=panels, person=person)
