"""The raids of a day (``/raids``): what the home page's "tomorrow's raids" counter opens, with
the same filters in the URL (date, person, status, district). Each raid offers its calendar file;
planning and the field mode come with the raids pages of the console's second part."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, render_template, request

from services.console.app import console_clients
from services.console.labels import label

raids = Blueprint("raids", __name__)

STATUSES = ("planned", "confirmed", "in_progress", "completed", "cancelled")


def _day(text: str | None, default: dt.date) -> tuple[dt.date, bool]:
    """The day asked for (ISO or dd.mm.yyyy), or ``default`` and False when it cannot be read."""
    if not text:
        return default, True
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return dt.datetime.strptime(text.strip(), fmt).date(), True
        except ValueError:
            continue
    return default, False


@raids.route("/raids")
def day_list() -> Any:
    day, readable = _day(request.args.get("date"), dt.date.today())
    status = request.args.get("status") if request.args.get("status") in STATUSES else None
    person = request.args.get("person") or None
    district = request.args.get("district") or None
    page = console_clients().raids.raids(
        starts_from=day.isoformat(),
        starts_until=day.isoformat(),
        status=status,
        person_id=person,
        district=district,
        page_size=100,
    )
    return render_template(
        "raids/day.html",
        day=day,
        readable=readable,
        page=page,
        status_options=[(s, label("raid_status", s)) for s in STATUSES],
        values={
            "date": day.strftime("%d.%m.%Y"),
            "status": status or "",
            "district": district or "",
            "person": person or "",
        },
    )
