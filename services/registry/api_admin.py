"""The registry's HTTP API for monitoring and administration: statistics (JSON, CSV, XLSX, PNG),
the catalogues admins extend (the audit trail is every service's, shared.http.audit)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint
from sqlalchemy import select

from services.registry import domain_plan, statistics
from services.registry.models import CatalogueEntry, tables
from services.registry.schemas_cases import (
    CatalogueEntryIn,
    CatalogueEntryOut,
    CatalogueOut,
    StatisticsArgs,
    StatisticsOut,
)
from shared.auth import audit
from shared.auth.policy import require
from shared.auth.roles import ADMIN, AUDITOR, COORDINATOR, LEAD_SPECIALIST
from shared.errors import NotFound
from shared.http import db_session, idempotent

admin = Blueprint("admin", __name__, url_prefix="", description="Statistics, catalogues")

MEDIA = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    "png": ("image/png", "png"),
}

# The one answer documented in four media types (flask-smorest documents one per status).
STATISTICS_200 = {
    "description": "`format=json` (the default) as JSON; csv, xlsx and png as files",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/StatisticsOut"}},
        **{
            media.split(";")[0]: {"schema": {"type": "string", "format": "binary"}}
            for media, _ext in MEDIA.values()
        },
    },
}


@admin.route("/statistics", methods=["GET"])
@admin.arguments(StatisticsArgs, location="query")
@admin.response(200, StatisticsOut)
@admin.doc(responses={"200": STATISTICS_200})
@require(AUDITOR, COORDINATOR, LEAD_SPECIALIST, ADMIN)
def get_statistics(args: dict[str, Any]) -> Any:
    """Per region or district and year: families in the bank by category at year end, entered,
    re-entered, removed by outcome, average duration by category. `format`: json, csv, xlsx, png."""
    stats = statistics.compute(
        db_session(),
        year_from=args["year_from"],
        year_to=args["year_to"],
        region=args.get("region"),
        district=args.get("district"),
        by=args["by"],
    )
    audit.record(
        db_session(),
        tables,
        action=audit.EXPORT,
        entity="statistics",
        entity_id=None,
        fields=[args["format"]],
    )
    if args["format"] == "json":
        return stats
    media, ext = MEDIA[args["format"]]
    body = {"csv": statistics.to_csv, "xlsx": statistics.to_xlsx, "png": statistics.to_png}[
        args["format"]
    ](stats)
    name = f"opora-statistics-{args['year_from']}-{args['year_to']}.{ext}"
    return Response(
        body,
        mimetype=media.split(";")[0],
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Content-Type": media},
    )


@admin.route("/catalogues/<name>", methods=["GET"])
@admin.response(200, CatalogueOut)
@require(LEAD_SPECIALIST, COORDINATOR, ADMIN)
def get_catalogue(name: str) -> Any:
    """`problem`, `strength` or `measure_kind`: built-in codes and those admins added."""
    items = domain_plan.catalogue(db_session(), name, include_inactive=True)
    return {"catalogue": name, "items": list(items.values())}


@admin.route("/catalogues/<name>", methods=["POST"])
@admin.arguments(CatalogueEntryIn)
@admin.response(201, CatalogueEntryOut)
@require(ADMIN)
@idempotent
def add_catalogue_entry(data: dict[str, Any], name: str) -> Any:
    entry = domain_plan.add_catalogue_entry(db_session(), name, data)
    return {**data, "built_in": False, "active": entry.active}


@admin.route("/catalogues/<name>/<code>", methods=["DELETE"])
@admin.response(204)
@require(ADMIN)
@idempotent
def retire_catalogue_entry(name: str, code: str) -> Any:
    """Retire an added code: records that use it keep it, new ones cannot."""
    entry = db_session().scalar(
        select(CatalogueEntry).where(CatalogueEntry.catalogue == name, CatalogueEntry.code == code)
    )
    if entry is None:
        raise NotFound("no added entry with this code (built-in codes stay)")
    entry.active = False
    return None
