"""The case workspace. ``/cases/<id>`` is what emails link to; the workspace's parts (stepper,
plan, approvals, assessments, contacts) are added to this blueprint."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from services.console.app import console_clients
from services.console.clients import Outcome, gather

cases = Blueprint("cases", __name__)


@cases.route("/cases/<case_id>")
def case(case_id: str) -> Any:
    registry = console_clients().registry
    found = registry.case(case_id)
    parts: dict[str, Outcome[Any]] = gather({"family": lambda: registry.family(found["family_id"])})
    return render_template("cases/case.html", case=found, family=parts["family"])
