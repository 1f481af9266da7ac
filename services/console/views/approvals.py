"""The coordinator's approvals inbox (``/approvals``): plans and closings waiting for a decision
by someone other than who asked, oldest first, each opening its case's approvals section where
the decision is taken. The registry decides who may see it (coordinators)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request

from services.console.app import console_clients
from services.console.clients import gather
from services.console.labels import label
from services.console.people import staff

approvals = Blueprint("approvals", __name__)

KINDS = ("plan", "closing")


@approvals.route("/approvals")
def inbox() -> Any:
    kind = request.args.get("kind") if request.args.get("kind") in KINDS else None
    district = request.args.get("district") or None
    clients = console_clients()
    registry = clients.registry
    # both at once: the page waits for the slower, not for the sum
    parts = gather(
        {
            "agencies": clients.referrals.agencies,
            "page": lambda: registry.approvals_inbox(
                state="pending", mine_to_decide=True, kind=kind, district=district, page_size=200
            ),
        }
    )
    inbox = parts["page"]
    if inbox.down is not None:  # the list itself: the 503 page naming the registry
        raise inbox.down
    if inbox.refused is not None:
        raise inbox.refused
    page = inbox.value
    agencies = parts["agencies"].value if parts["agencies"].ok else []
    names = {p["person_id"]: p["name"] for p in staff(agencies or [])}
    return render_template(
        "approvals/inbox.html",
        page=page,
        names=names,
        kind_options=[(k, label("approval_kind", k)) for k in KINDS],
        values={"kind": kind or "", "district": district or ""},
    )
