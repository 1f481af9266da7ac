"""The family card: members, address and category history, agreements and consents, cases,
and one timeline across the family's cases and services (contacts and raid visits from the
case contact logs, referrals and their answers from the referrals API, assessments, category
changes, approvals).

Two rounds of concurrent calls: the family's own lists and its referrals at once, then every
case's lists at once. A service down empties only its part.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, redirect, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from services.console.app import console_clients, current_person
from services.console.clients import ApiError, Outcome, gather
from services.console.forms import FORM_ERRORS, FormState
from services.console.labels import label
from shared.auth.roles import COORDINATOR, LEAD_SPECIALIST

family_card = Blueprint("family_card", __name__)

CASE_PARTS = ("contacts", "assessments", "approvals", "agreements")
ADDRESS_EDITORS = (LEAD_SPECIALIST, COORDINATOR)
"""Who the registry lets ``PATCH /families/{id}`` (its ``CASEWORK``); others see no form."""
ADDRESS_FIELDS = {
    "district": _l("Район"),
    "settlement": _l("Населённый пункт"),
    "street": _l("Улица"),
    "house": _l("Дом"),
    "flat": _l("Квартира"),
    "latitude": _l("Широта"),
    "longitude": _l("Долгота"),
}
COORDINATES = ("latitude", "longitude")


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


def may_edit_address() -> bool:
    person = current_person()
    return person is not None and person.has_role(*ADDRESS_EDITORS)


def address_form(family: dict[str, Any]) -> FormState:
    """The address form, filled with the family's current address."""
    return FormState.new(ADDRESS_FIELDS, family.get("address") or {})


def address_body(form: FormState, family: dict[str, Any]) -> dict[str, Any]:
    """The registry's ``AddressIn``: the region is kept as it is; a decimal comma (60,542) is
    read as a point."""
    address: dict[str, Any] = {"region": (family.get("address") or {}).get("region")}
    for name in ADDRESS_FIELDS:
        value = form.value(name)
        if name in COORDINATES:
            value = value.replace(",", ".")
        address[name] = value or None
    return {"address": address}


def fail_address(form: FormState, error: ApiError) -> None:
    """``json.address.latitude`` goes next to the latitude field; the rest to the summary."""
    form.idempotency_key = str(uuid.uuid4())  # the refusal is stored under the old key
    for path, messages in error.errors.items():
        parts = path.split(".")
        if parts[0] in ("json", "form"):
            parts = parts[1:]
        if parts and parts[0] == "address":
            parts = parts[1:]
        name = parts[0] if parts and parts[0] in ADDRESS_FIELDS else FORM_ERRORS
        form.errors.setdefault(name, []).extend(messages)
    if not error.errors:
        form.errors.setdefault(FORM_ERRORS, []).append(error.detail or error.title)


def render_card(family_id: str, form: FormState | None = None, status: int = 200) -> Any:
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
    if form is None and may_edit_address():
        form = address_form(family)
    return (
        render_template(
            "families/card.html",
            family=family,
            first=first,
            cases=cases,
            agreements=agreements,
            parts_down=any(outcome.down for outcome in parts.values()),
            entries=timeline(
                cases, parts, items_of(first["history"]), items_of(first["referrals"])
            ),
            address_form=form,
        ),
        status,
    )


@family_card.route("/families/<family_id>")
def card(family_id: str) -> Any:
    return render_card(family_id)


@family_card.post("/families/<family_id>/address")
def update_address(family_id: str) -> Any:
    """Correct the address (README step 2: the coordinates the school did not know); a
    refusal brings the card back with what was typed and the errors next to the fields."""
    if not may_edit_address():
        abort(403)
    form = FormState.from_request(ADDRESS_FIELDS)
    registry = console_clients().registry
    family = registry.family(family_id)
    try:
        registry.update_family(
            family_id, address_body(form, family), idempotency_key=form.idempotency_key
        )
    except ApiError as error:
        fail_address(form, error)
        return render_card(family_id, form, 422)
    return redirect(f"/families/{family_id}#address-title", code=303)
