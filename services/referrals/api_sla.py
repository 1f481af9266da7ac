"""Coordinators' view of overdue referrals, and the signed answer link of a referral (for a
sender who passes it on by hand; notifications sends the same link itself)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.referrals import domain, links, sla
from services.referrals.domain import Actor
from services.referrals.models import tables
from services.referrals.schemas_links import LinkUrlOut, OverdueArgs, OverduePage
from shared.auth import audit
from shared.auth.context import current_principal
from shared.auth.links import issue_link_token
from shared.auth.policy import require
from shared.auth.roles import ADMIN, COORDINATOR, LEAD_SPECIALIST
from shared.db import utcnow
from shared.errors import Conflict
from shared.http import db_session, opora_app, paginate

overdue = Blueprint(
    "referral_sla",
    __name__,
    url_prefix="/referrals",
    description="Referral SLA: overdue referrals, signed answer links",
)


@overdue.route("/overdue", methods=["GET"])
@overdue.arguments(OverdueArgs, location="query")
@overdue.response(200, OverduePage)
@require(COORDINATOR, ADMIN)
def list_overdue(args: dict[str, Any]) -> Any:
    """Referrals not acknowledged (still requested) or not completed in time, by working
    days; filter by district, agency, kind and whether escalated."""
    now = utcnow()
    rules = sla.SlaRules.current()
    stmt = sla.overdue_query(
        now,
        kind=args.get("kind"),
        district=args.get("district"),
        agency_id=args.get("agency_id"),
        escalated=args.get("escalated"),
    )
    page = paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])
    page["items"] = [sla.overdue_view(r, rules, now) for r in page["items"]]
    audit.record_families(
        db_session(),
        tables,
        action=audit.LIST,
        entity="referral",
        family_ids=[r["family_id"] for r in page["items"]],
        fields=["family_id", "family_number"],
    )
    return page


@overdue.route("/<referral_id>/respond-link", methods=["GET"])
@overdue.response(200, LinkUrlOut)
@require(LEAD_SPECIALIST, COORDINATOR, ADMIN)
def respond_link(referral_id: str) -> Any:
    """The signed link by which the agency answers without an account."""
    referral = domain.visible_referral(db_session(), Actor.of(current_principal()), referral_id)
    if referral.agency_id is None or referral.status == "draft":
        raise Conflict("the referral has not been sent to an agency yet")
    settings = opora_app().settings
    token = issue_link_token(settings, links.PURPOSE, referral.id)
    return {
        "url": links.link_url(settings, referral.id, token),
        "valid_days": links.link_days(settings.options),
    }
