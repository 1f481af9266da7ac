"""Signals (``/signals``): the coordinators' triage queue, earliest deadline first, with the
time left (red 2 h, amber 6 h, green 24 h); a signal's page with what was observed, the
families it may be, and the decision: accept (the registry registers the family or attaches
it), accept for a family chosen from the candidates, or dismiss with a reason. After the
acceptance, the registry's intake shows what became of it, and an unsettled one is resolved
here. A signal the registry returned to triage shows why."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from services.console.app import console_clients
from services.console.clients import ApiError, gather
from services.console.forms import FormState
from services.console.labels import label
from services.console.people import staff
from services.console.views.home import PRIORITIES, time_left

signals = Blueprint("signals", __name__)

STATUSES = ("new", "accepted", "dismissed")
DISMISS_FIELDS = {"reason": _l("Причина отклонения")}
LEAD_FIELDS = {"specialist": _l("Ведущий специалист")}
ACCEPT_FIELDS = {"family_id": _l("Семья")}


def _date(value: Any) -> str | None:
    """An ISO date as the check takes it; anything else the reporter wrote is left out."""
    try:
        return dt.date.fromisoformat(str(value)).isoformat() if value else None
    except ValueError:
        return None


def duplicate_report(known: dict[str, Any], district: str) -> dict[str, Any] | None:
    """The family as the signal reports it, in the shape of the registry's duplicate check
    (``POST /families/duplicates``): the display name of two words or more as an adult, the
    children named (a given name alone takes the surname), else the bare surname; the district
    and settlement. The check requires a region and a settlement but compares neither the region
    nor a missing settlement, so the signal's district stands in for the one and a dash for the
    other. ``None`` when the signal names nobody."""
    display = " ".join(str(known.get("display_name") or "").split())
    surname = " ".join(str(known.get("surname") or "").split()) or (display.split() or [""])[0]
    members: list[dict[str, Any]] = []
    if len(display.split()) >= 2:
        members.append({"role": "other", "full_name": display[:300]})
    for child in known.get("children") or []:
        if not isinstance(child, dict):
            continue
        name = " ".join(str(child.get("full_name") or child.get("name") or "").split())
        if name and surname and len(name.split()) == 1:
            name = f"{surname} {name}"
        if len(name) < 2:
            continue
        school, school_class = child.get("school"), child.get("class") or child.get("school_class")
        members.append(
            {
                "role": "child",
                "full_name": name[:300],
                "birth_date": _date(child.get("birth_date")),
                "school": str(school)[:200] if school else None,
                "school_class": str(school_class)[:20] if school_class else None,
            }
        )
    if not members and len(surname) >= 2:
        members.append({"role": "other", "full_name": surname[:100]})
    if not members or not district:
        return None
    settlement = " ".join(str(known.get("settlement") or "").split())[:120] or "—"
    address = {"region": district[:120], "district": district[:120], "settlement": settlement}
    return {"address": address, "members": members}


def countdown(due_at: str, now: dt.datetime) -> dict[str, Any]:
    """Time left before the triage deadline, and its colour: red within 2 h, amber 6 h."""
    due = dt.datetime.fromisoformat(due_at)
    seconds = (due - now).total_seconds()
    tone = "red" if seconds <= 2 * 3600 else "amber" if seconds <= 6 * 3600 else "green"
    return {"text": time_left(due, now), "tone": tone, "due": due.isoformat()}


@signals.route("/signals")
def index() -> Any:
    status = request.args.get("status") if request.args.get("status") in STATUSES else "new"
    priority = request.args.get("priority") if request.args.get("priority") in PRIORITIES else None
    district = request.args.get("district") or None
    page = console_clients().referrals.signals(status=status, district=district, page_size=200)
    items = [s for s in page["items"] if priority is None or s["priority"] == priority]
    now = dt.datetime.now(dt.UTC)
    return render_template(
        "signals/index.html",
        items=items,
        countdowns={s["id"]: countdown(s["triage_due_at"], now) for s in items},
        status=status,
        status_options=[(s, label("signal_status", s)) for s in STATUSES],
        priority_options=[(p, label("signal_priority", p)) for p in PRIORITIES],
        values={"status": status, "priority": priority or "", "district": district or ""},
    )


@signals.route("/signals/<signal_id>")
def signal(signal_id: str) -> Any:
    return render_signal(signal_id)


def render_signal(
    signal_id: str,
    *,
    dismiss_form: FormState | None = None,
    accept_form: FormState | None = None,
    lead_form: FormState | None = None,
    status: int = 200,
) -> Any:
    clients = console_clients()
    item = clients.referrals.signal(signal_id)
    known = item.get("family") or {}
    parts: dict[str, Any] = {}
    if item["status"] == "accepted":
        parts["intake"] = lambda: clients.registry.intake_of_signal(signal_id)
        parts["agencies"] = clients.referrals.agencies
    elif item["status"] == "new" and (report := duplicate_report(known, item["district"])):
        parts["candidates"] = lambda: clients.registry.check_duplicates(report)
    outcomes = gather(parts) if parts else {}
    now = dt.datetime.now(dt.UTC)
    directory = outcomes.get("agencies")
    specialists = [
        (p["person_id"], f"{p['name']}, {p['agency_name']}")
        for p in staff(directory.value or [] if directory is not None and directory.ok else [])
        if "lead_specialist" in p["roles"]
    ]
    return (
        render_template(
            "signals/signal.html",
            signal=item,
            known=known,
            countdown=countdown(item["triage_due_at"], now) if item["status"] == "new" else None,
            candidates=outcomes.get("candidates"),
            intake=outcomes.get("intake"),
            dismiss_form=dismiss_form or FormState.new(DISMISS_FIELDS),
            accept_form=accept_form or FormState.new(ACCEPT_FIELDS),
            lead_form=lead_form or FormState.new(LEAD_FIELDS),
            specialists=specialists,
        ),
        status,
    )


@signals.route("/signals/<signal_id>/accept", methods=["POST"])
def accept(signal_id: str) -> Any:
    """Accept: the registry registers the family as the signal knows it or matches it; with
    ``family_id`` the signal goes to that family's case."""
    form = FormState.from_request(ACCEPT_FIELDS)
    body = {"family_id": form.value("family_id") or None}
    try:
        console_clients().referrals.accept_signal(
            signal_id, body, idempotency_key=form.idempotency_key
        )
    except ApiError as error:
        form.fail(error)
        return render_signal(signal_id, accept_form=form, status=422)
    return redirect(url_for("signals.signal", signal_id=signal_id, _anchor="intake"))


@signals.route("/signals/<signal_id>/dismiss", methods=["POST"])
def dismiss(signal_id: str) -> Any:
    form = FormState.from_request(DISMISS_FIELDS)
    if not form.value("reason"):
        form.errors = {"reason": [str(_l("Укажите причину"))]}
        return render_signal(signal_id, dismiss_form=form, status=422)
    try:
        console_clients().referrals.dismiss_signal(
            signal_id, form.value("reason"), idempotency_key=form.idempotency_key
        )
    except ApiError as error:
        form.fail(error)
        return render_signal(signal_id, dismiss_form=form, status=422)
    return redirect(url_for("signals.index"))


@signals.route("/signals/<signal_id>/intake/<intake_id>", methods=["POST"])
def resolve(signal_id: str, intake_id: str) -> Any:
    """Resolve the registry's intake: register a new family, or attach to a candidate."""
    form = FormState.from_request(ACCEPT_FIELDS)
    choice = request.form.get("choice")
    if choice == "register":
        body: dict[str, Any] = {"register": True}
    elif choice == "attach" and form.value("family_id"):
        body = {"family_id": form.value("family_id")}
    else:
        abort(400)
    try:
        console_clients().registry.resolve_intake(
            intake_id, body, idempotency_key=form.idempotency_key
        )
    except ApiError as error:
        form.fail(error)
        return render_signal(signal_id, accept_form=form, status=422)
    return redirect(url_for("signals.signal", signal_id=signal_id, _anchor="intake"))


@signals.route("/signals/<signal_id>/cases/<case_id>/lead", methods=["POST"])
def assign_lead(signal_id: str, case_id: str) -> Any:
    """The coordinator names the case's lead specialist (the registry emails them)."""
    form = FormState.from_request(LEAD_FIELDS)
    try:
        console_clients().registry.case_write(
            "PUT",
            f"/cases/{case_id}/lead",
            {"specialist": form.value("specialist")},
            idempotency_key=form.idempotency_key,
        )
    except ApiError as error:
        form.fail(error)
        return render_signal(signal_id, lead_form=form, status=422)
    return redirect(url_for("signals.signal", signal_id=signal_id, lead="1", _anchor="intake"))
