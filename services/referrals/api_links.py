"""Answering a referral by a signed link (no account): ``GET`` shows what the referral
carries, ``POST`` accepts, rejects, starts or completes it. The token is bound to the purpose
``referral`` and the referral's id, and expires after ``REFERRALS_LINK_DAYS``; a bad, foreign,
expired or replaced (sent again, ``notifications.link.reissued``) token answers 401. Every answer is audited as ``link:<agency_id>``."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from services.referrals import domain, links
from services.referrals.models import Referral, tables
from services.referrals.schemas_links import LinkActionIn, LinkArgs, LinkReferralOut
from shared.auth import audit
from shared.auth.context import principal_context
from shared.auth.links import check_link_token
from shared.auth.principal import Principal
from shared.db import utcnow
from shared.errors import Unauthorized
from shared.http import db_session, link_protected, opora_app

respond = Blueprint(
    "referral_links",
    __name__,
    url_prefix="/referrals",
    description="Answering a referral by a signed link, for agencies without an account",
)

SHOWN_FIELDS = ["number", "service_code", "reason", "urgency", "deadline", "contact"]


def _referral(referral_id: str, token: str, *, for_update: bool = False) -> Referral:
    issued_at = check_link_token(
        opora_app().settings,
        token,
        links.PURPOSE,
        referral_id,
        links.link_days(opora_app().settings.options) * 24 * 3600,
    )
    links.check_not_replaced(db_session(), referral_id, issued_at)
    referral = domain.get_referral(db_session(), referral_id, for_update=for_update)
    if referral.agency_id is None or referral.status == "draft":
        raise Unauthorized("the link is not valid")
    return referral


def _link_principal(referral: Referral) -> Principal:
    return Principal(
        subject=f"link:{referral.agency_id}", roles=frozenset(), agency_id=referral.agency_id
    )


@respond.route("/<referral_id>/respond", methods=["GET"])
@respond.arguments(LinkArgs, location="query")
@respond.response(200, LinkReferralOut)
@link_protected
def show_by_link(args: dict[str, Any], referral_id: str) -> Any:
    """What the referral carries (number, service, reason, urgency, deadline, contact person)
    and the answers it takes now; never the family file."""
    referral = _referral(referral_id, args["token"])
    with principal_context(_link_principal(referral)):
        audit.record(
            db_session(),
            tables,
            action="read",
            entity="referral",
            entity_id=referral.id,
            family_id=referral.family_id,
            fields=SHOWN_FIELDS,
        )
    return links.view(referral)


@respond.route("/<referral_id>/respond", methods=["POST"])
@respond.arguments(LinkArgs, location="query")
@respond.arguments(LinkActionIn)
@respond.response(200, LinkReferralOut)
@link_protected
def answer_by_link(args: dict[str, Any], data: dict[str, Any], referral_id: str) -> Any:
    """``accept``, ``reject`` (``reason`` required), ``start``, ``complete`` (``outcome``
    required). A referral in a final state answers 409."""
    referral = _referral(referral_id, args["token"], for_update=True)
    links.respond(
        db_session(),
        referral,
        data["action"],
        utcnow(),
        reason=data.get("reason"),
        outcome=data.get("outcome"),
    )
    with principal_context(_link_principal(referral)):
        audit.record(
            db_session(),
            tables,
            action="update",
            entity="referral",
            entity_id=referral.id,
            family_id=referral.family_id,
            fields=["status"],
            reason=data.get("reason") or f"answered by link: {data['action']}",
        )
    return links.view(referral)
