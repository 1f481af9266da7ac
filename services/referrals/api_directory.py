"""The directory API: agencies and their staff, routing rules, and the API keys of agency
systems (shown once, stored hashed, scoped to their agency). Admins and coordinators write;
every authenticated principal reads the directory."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from services.referrals import directory
from services.referrals.models import Agency, RoutingRule, tables
from services.referrals.schemas import (
    AgencyArgs,
    AgencyIn,
    AgencyOut,
    AgencyPage,
    AgencyPatch,
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    ContactOut,
    ContactPut,
    RuleIn,
    RuleOut,
)
from shared.auth.apikeys import create_api_key, revoke_api_key
from shared.auth.context import current_principal
from shared.auth.policy import require
from shared.auth.roles import (
    ADMIN,
    AGENCY_STAFF,
    AGENCY_SYSTEM,
    AUDITOR,
    COORDINATOR,
    LEAD_SPECIALIST,
)
from shared.db import utcnow
from shared.errors import NotFound
from shared.http import db_session, idempotent, paginate

agencies = Blueprint("agencies", __name__, url_prefix="/agencies", description="Agency directory")
rules = Blueprint(
    "routing_rules", __name__, url_prefix="/routing-rules", description="Referral routing"
)

KEEPERS = (ADMIN, COORDINATOR)
READERS = (ADMIN, COORDINATOR, LEAD_SPECIALIST, AGENCY_STAFF, AGENCY_SYSTEM, AUDITOR)


@agencies.route("", methods=["POST"])
@agencies.arguments(AgencyIn)
@agencies.response(201, AgencyOut)
@require(*KEEPERS)
@idempotent
def create_agency(data: dict[str, Any]) -> Any:
    agency = directory.create_agency(db_session(), data, utcnow())
    return agency, 201, {"Location": f"/agencies/{agency.id}"}


@agencies.route("", methods=["GET"])
@agencies.arguments(AgencyArgs, location="query")
@agencies.response(200, AgencyPage)
@require(*READERS)
def list_agencies(args: dict[str, Any]) -> Any:
    """Filters by kind here; district and service are filtered in Python (JSON lists)."""
    stmt = select(Agency).order_by(Agency.name, Agency.id)
    if args.get("kind"):
        stmt = stmt.where(Agency.kind == args["kind"])
    if args.get("district") or args.get("service"):
        ids = [
            a.id
            for a in db_session().scalars(stmt)
            if (not args.get("district") or args["district"] in a.districts)
            and (not args.get("service") or args["service"] in a.services)
        ]
        stmt = stmt.where(Agency.id.in_(ids))
    return paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])


@agencies.route("/<agency_id>", methods=["GET"])
@agencies.response(200, AgencyOut)
@require(*READERS)
def get_agency(agency_id: str) -> Any:
    return directory.get_agency(db_session(), agency_id)


@agencies.route("/<agency_id>", methods=["PATCH"])
@agencies.arguments(AgencyPatch)
@agencies.response(200, AgencyOut)
@require(*KEEPERS)
@idempotent
def change_agency(data: dict[str, Any], agency_id: str) -> Any:
    agency = directory.get_agency(db_session(), agency_id)
    directory.update_agency(db_session(), agency, data, utcnow())
    return agency


@agencies.route("/<agency_id>/contacts/<person_id>", methods=["PUT"])
@agencies.arguments(ContactPut)
@agencies.response(200, ContactOut)
@require(*KEEPERS)
@idempotent
def put_contact(data: dict[str, Any], agency_id: str, person_id: str) -> Any:
    agency = directory.get_agency(db_session(), agency_id)
    return directory.upsert_contact(
        db_session(), agency, {**data, "person_id": person_id}, utcnow()
    )


@agencies.route("/<agency_id>/contacts/<person_id>", methods=["DELETE"])
@agencies.response(204)
@require(*KEEPERS)
@idempotent
def delete_contact(agency_id: str, person_id: str) -> Any:
    agency = directory.get_agency(db_session(), agency_id)
    directory.remove_contact(db_session(), agency, person_id, utcnow())
    return None


# --- API keys ----------------------------------------------------------------------------------


def _key_row(agency_id: str, key_id: str) -> dict[str, Any]:
    keys = tables.api_keys
    row = (
        db_session()
        .execute(select(keys).where(keys.c.key_id == key_id, keys.c.agency_id == agency_id))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"agency {agency_id} has no API key {key_id}")
    return dict(row)


def _new_key(agency_id: str, name: str) -> dict[str, Any]:
    full_key = create_api_key(db_session(), tables, agency_id=agency_id, name=name)
    key_id = full_key.split("_")[1]
    return {**_key_row(agency_id, key_id), "key": full_key}


@agencies.route("/<agency_id>/api-keys", methods=["POST"])
@agencies.arguments(ApiKeyIn)
@agencies.response(201, ApiKeyCreated)
@require(*KEEPERS)
@idempotent
def create_key(data: dict[str, Any], agency_id: str) -> Any:
    """A key for the agency's system; the answer is the only time the key is readable."""
    directory.get_agency(db_session(), agency_id)
    return _new_key(agency_id, data["name"]), 201


@agencies.route("/<agency_id>/api-keys", methods=["GET"])
@agencies.response(200, ApiKeyOut(many=True))
@require(*KEEPERS)
def list_keys(agency_id: str) -> Any:
    keys = tables.api_keys
    stmt = select(keys).where(keys.c.agency_id == agency_id).order_by(keys.c.created_at)
    return [dict(r) for r in db_session().execute(stmt).mappings()]


@agencies.route("/<agency_id>/api-keys/<key_id>", methods=["DELETE"])
@agencies.response(204)
@require(*KEEPERS)
@idempotent
def revoke_key(agency_id: str, key_id: str) -> Any:
    _key_row(agency_id, key_id)
    revoke_api_key(db_session(), tables, key_id)
    return None


@agencies.route("/<agency_id>/api-keys/<key_id>/rotate", methods=["POST"])
@agencies.response(201, ApiKeyCreated)
@require(*KEEPERS)
@idempotent
def rotate_key(agency_id: str, key_id: str) -> Any:
    """A new key under the same name; the old one is revoked in the same transaction."""
    old = _key_row(agency_id, key_id)
    revoke_api_key(db_session(), tables, key_id)
    return _new_key(agency_id, old["name"]), 201


# --- routing rules -----------------------------------------------------------------------------


@rules.route("", methods=["PUT"])
@rules.arguments(RuleIn)
@rules.response(200, RuleOut)
@require(*KEEPERS)
@idempotent
def put_rule(data: dict[str, Any]) -> Any:
    """Set which agency receives a service in a district (replaces the rule there)."""
    return directory.add_rule(db_session(), data, current_principal().subject, utcnow())


@rules.route("", methods=["GET"])
@rules.response(200, RuleOut(many=True))
@require(*READERS)
def list_rules() -> Any:
    stmt = select(RoutingRule).order_by(RoutingRule.service_code, RoutingRule.district)
    return list(db_session().scalars(stmt))


@rules.route("/<rule_id>", methods=["DELETE"])
@rules.response(204)
@require(*KEEPERS)
@idempotent
def delete_rule(rule_id: str) -> Any:
    rule = db_session().get(RoutingRule, rule_id)
    if rule is None:
        raise NotFound(f"no routing rule {rule_id}")
    db_session().delete(rule)
    return None
