"""Administration, a first version: the registry's audit trail (``/audit?family_id=`` or
``?entity_id=``), newest first: who read or changed a family's data, when, and why. Filters and
the other services' trails come with the full administration pages.

The emergency-access email sends coordinators here (``/audit?entity_id=<grant id>``); they do
not read the audit trail, so for them the link opens the list of emergency grants, where that
grant is."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for

from services.console.app import console_clients, current_person
from shared.auth.roles import ADMIN, AUDITOR, COORDINATOR

admin = Blueprint("admin", __name__)


@admin.route("/audit")
def audit() -> Any:
    person = current_person()
    assert person is not None
    if not person.has_role(ADMIN, AUDITOR) and person.has_role(COORDINATOR):
        return redirect(url_for("access.grants"))
    family_id = (request.args.get("family_id") or "").strip()[:64] or None
    entity_id = (request.args.get("entity_id") or "").strip()[:64] or None
    page_no = request.args.get("page", "1")
    page = console_clients().registry.audit(
        family_id=family_id,
        entity_id=entity_id,
        page=int(page_no) if page_no.isdigit() and 0 < int(page_no) < 10_000 else 1,
        page_size=100,
    )
    return render_template("admin/audit.html", page=page, family_id=family_id or "")
