"""Break-the-glass: agency staff outside a family's scope ask for emergency access with a
reason and a duration (up to the registry's maximum); a banner stays across pages while it
lasts, with a button to end it early; coordinators review every grant at ``/access/grants``.

The banner costs no call on ordinary pages: the session remembers until when a grant made here
lasts, and only until then does a page ask the registry which of the person's grants are still
in force (a coordinator may have ended one early)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, redirect, render_template, request, session
from flask_babel import lazy_gettext as _l

from services.console.app import console_clients, current_person
from services.console.clients import ApiError, ServiceDown, gather
from services.console.forms import FormState
from services.console.people import staff
from services.console.views.auth import safe_next
from shared.auth.roles import AGENCY_STAFF

access = Blueprint("access", __name__)

GLASS = {"reason": _l("Причина"), "minutes": _l("На сколько минут")}
SESSION_KEY = "glass_until"


def _render_request(family_id: str, form: FormState, status: int = 200) -> Any:
    limits = console_clients().registry.glass_limits()
    if not form.value("minutes"):
        form.values["minutes"] = str(limits["default_minutes"])
    return render_template(
        "access/break_glass.html", family_id=family_id, form=form, limits=limits
    ), status


@access.route("/families/<family_id>/break-glass", methods=["GET"])
def request_form(family_id: str) -> Any:
    return _render_request(family_id, FormState.new(GLASS))


@access.route("/families/<family_id>/break-glass", methods=["POST"])
def request_access(family_id: str) -> Any:
    form = FormState.from_request(GLASS)
    raw = form.value("minutes")
    try:
        grant = console_clients().registry.break_glass(
            family_id,
            form.value("reason"),
            int(raw) if raw.isdigit() else None,
            idempotency_key=form.idempotency_key,
        )
    except ApiError as error:
        form.fail(error)
        return _render_request(family_id, form, 422)
    expires = dt.datetime.fromisoformat(grant["expires_at"])
    known = session.get(SESSION_KEY)
    if known is None or dt.datetime.fromisoformat(known) < expires:
        session[SESSION_KEY] = expires.isoformat()
    return redirect(f"/families/{family_id}", 303)


@access.route("/access/grants/<grant_id>/end", methods=["POST"])
def end(grant_id: str) -> Any:
    """The grantee or a coordinator ends an emergency access before it expires."""
    form = FormState.from_request({"family_id": "family"})
    console_clients().registry.end_glass(
        form.value("family_id"), grant_id, idempotency_key=form.idempotency_key
    )
    return redirect(safe_next(request.form.get("next")), 303)


@access.route("/access/grants")
def grants() -> Any:
    """Every emergency access for the coordinator (the registry refuses others), newest first."""
    active = request.args.get("active")
    filters = {
        "active": active if active in ("true", "false") else None,
        "district": request.args.get("district") or None,
        "page_size": 100,
    }
    clients = console_clients()
    parts = gather({"agencies": clients.referrals.agencies})
    page = clients.registry.grants(**filters)
    agencies = parts["agencies"].value if parts["agencies"].ok else []
    return render_template(
        "access/grants.html",
        page=page,
        names={p["person_id"]: p["name"] for p in staff(agencies or [])},
        agency_names={a["id"]: a["name"] for a in agencies or []},
        values={"active": filters["active"] or "", "district": filters["district"] or ""},
    )


@access.app_template_global()
def glass_banner() -> list[dict[str, Any]]:
    """The signed-in person's emergency accesses in force, for the banner (none without one
    made here that may still last)."""
    person = current_person()
    until = session.get(SESSION_KEY)
    if person is None or not person.has_role(AGENCY_STAFF) or not until:
        return []
    if dt.datetime.fromisoformat(until) <= dt.datetime.now(dt.UTC):
        session.pop(SESSION_KEY, None)
        return []
    try:
        items: list[dict[str, Any]] = console_clients().registry.grants(active="true")["items"]
    except (ApiError, ServiceDown):
        return [{"id": None, "expires_at": until}]
    if not items:
        session.pop(SESSION_KEY, None)
    return items
