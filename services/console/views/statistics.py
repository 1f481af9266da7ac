"""Statistics (``/statistics``), a first version: the registry's yearly table for a district
and its chart, the PNG the registry draws, served through the console (the page's own origin:
the Content-Security-Policy allows no other). Exports and comparisons come with the full
statistics page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, render_template, request

from services.console.app import console_clients

statistics = Blueprint("statistics", __name__)


def _filters() -> dict[str, Any]:
    district = (request.args.get("district") or "").strip()[:120]
    return {"district": district or None}


@statistics.route("/statistics")
def index() -> Any:
    filters = _filters()
    table = console_clients().registry.statistics(**filters)
    return render_template(
        "statistics/index.html", table=table, values={"district": filters["district"] or ""}
    )


@statistics.route("/statistics/chart.png")
def chart() -> Response:
    body = console_clients().registry.statistics_png(**_filters())
    return Response(body, content_type="image/png")
