"""The family card: members, address and category history, agreements and consents, cases,
and one timeline across the family's cases and services (contacts and raid visits from the
case contact logs, referrals and their answers from the referrals API, assessments, category
changes, approvals).

Two rounds of concurrent calls: the family's own lists and its referrals at once, then every
case's lists at once. A service down empties only its part.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, render_template
from flask_babel import gettext as _

from services.console.app import console_clients
from services.console.clients import Outcome, gather
from services.console.labels import label

family_card = Blueprint("family_card", __name__)

CASE_PARTS = ("contacts", "assessments", "approvals", "agreements")


@dataclass(frozen=True)
class Entry:
    """One line of the timeline: when, what, and which case."""

    on: dt.date
    title: str
    text: str
    case: str | None = None


def _day(value: Any) -> dt.date | None:
    if not value:
        return None
    text = str(value)
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None


def items_of(outcome: Outcome[Any] | None) -> list[dict[str, Any]]:
    """A part's rows, whether the API answered a list or a page (``items``)."""
    if outcome is None or not outcome.ok:
        return []
    value = outcome.value
    rows = value.get("items", []) if isinstance(value, dict) else value
    return list(rows or [])


def timeline(
    cases: list[dict[str, Any]],
    parts: dict[str, Outcome[Any]],
    history: list[dict[str, Any]],
    referrals: list[dict[str, Any]],
) -> list[Entry]:
    """Everything that happened to the family, newest first."""
    entries: list[Entry] = []

    def add(on: Any, title: str, text: str, case: str | None = None) -> None:
        day = _day(on)
        if day is not None:
            entries.append(Entry(day, title, text, case))

    for change in history:
        was = change.get("category_from")
        add(
            change.get("changed_on"),
            _("Категория"),
            (f"{label('category', was)} → " if was else "")
            + label("category", change["category_to"]),
        )
    for case in cases:
        number = case["id"]
        add(case.get("opened_on"), _("Случай открыт"), label("stage", "preparatory"), number)
        if case.get("closed_on"):
            add(
                case["closed_on"], _("Случай закрыт"), label("outcome", case.get("outcome")), number
            )
        for item in items_of(parts.get(f"{number}:contacts")):
            add(
                item.get("occurred_on"),
                _("Контакт"),
                label("contact_kind", item.get("kind")),
                number,
            )
        for item in items_of(parts.get(f"{number}:assessments")):
            add(item.get("assessed_on"), _("Оценка"), _("по восьми сферам"), number)
        for item in items_of(parts.get(f"{number}:approvals")):
            add(
                item.get("decided_at") or item.get("requested_at"),
                _("Согласование"),
                f"{label('approval_kind', item.get('kind'))}: "
                f"{label('approval_state', item.get('state'))}",
                number,
            )
    for referral in referrals:
        add(
            referral.get("updated_at") or referral.get("created_at"),
            _("Направление"),
            f"{referral.get('number') or ''} {label('referral_status', referral.get('status'))}",
        )
    return sorted(entries, key=lambda e: e.on, reverse=True)


@family_card.route("/families/<family_id>")
def card(family_id: str) -> Any:
    clients = console_clients()
    registry = clients.registry
    family = registry.family(family_id)  # 404/403 become the console's pages
    first = gather(
        {
            "history": lambda: registry.category_history(family_id),
            "addresses": lambda: registry.addresses(family_id),
            "cases": lambda: registry.family_cases(family_id),
            "referrals": lambda: clients.referrals.family_referrals(family_id),
        }
    )
    cases = items_of(first["cases"])
    calls = {
        f"{case['id']}:{part}": (lambda c=case["id"], p=part: registry.case_part(c, p))
        for case in cases
        for part in CASE_PARTS
    }
    parts = gather(calls) if calls else {}
    agreements = [item for case in cases for item in items_of(parts[f"{case['id']}:agreements"])]
    return render_template(
        "families/card.html",
        family=family,
        first=first,
        cases=cases,
        agreements=agreements,
        parts_down=any(outcome.down for outcome in parts.values()),
        entries=timeline(cases, parts, items_of(first["history"]), items_of(first["referrals"])),
    )
