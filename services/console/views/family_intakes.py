"""Families that came in with a signal and may already be in the data bank: the coordinator
sees what the signal said beside each candidate and why it matches, then attaches the signal to
one of them or registers a new family (the registry's ``/intakes``). The home page's counter
"possible duplicates to resolve" opens this list."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request

from services.console.app import console_clients, current_person
from services.console.clients import ApiError, Outcome, gather
from shared.auth.roles import COORDINATOR

family_intakes = Blueprint("family_intakes", __name__)

SHOWN = 20


@family_intakes.get("/families/intakes")
def pending() -> Any:
    registry = console_clients().registry
    district = request.args.get("district") or None
    page = registry.intakes(state="pending", district=district, page_size=SHOWN)

    def detail(intake_id: str) -> Callable[[], Any]:
        return lambda: registry.intake(intake_id)

    details: dict[str, Outcome[Any]] = gather({i["id"]: detail(i["id"]) for i in page["items"]})
    person = current_person()
    return render_template(
        "families/intakes.html",
        page=page,
        intakes=[d.value for d in details.values() if d.ok],
        failed=sum(1 for d in details.values() if not d.ok),
        key=str(uuid.uuid4()),
        may_resolve=person is not None and person.has_role(COORDINATOR),
        error=request.args.get("error"),
    )


@family_intakes.post("/families/intakes/<intake_id>/resolve")
def resolve(intake_id: str) -> Any:
    """Attach to the chosen family, or register a new one; a refusal is shown on the list."""
    family_id = request.form.get("family_id") or None
    register = request.form.get("register") == "true"
    if bool(family_id) == register:
        abort(400)
    key = request.form.get("idempotency_key") or str(uuid.uuid4())
    body: dict[str, Any] = {"family_id": family_id} if family_id else {"register": True}
    try:
        done = console_clients().registry.resolve_intake(intake_id, body, idempotency_key=key)
    except ApiError as error:
        return render_template(
            "families/intakes.html",
            page={"items": [], "total": 0},
            intakes=[],
            failed=0,
            key=str(uuid.uuid4()),
            may_resolve=True,
            error=error.detail or error.title,
        ), 422
    return redirect(f"/families/{done['family_id']}", 303)
