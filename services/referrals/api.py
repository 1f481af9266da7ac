"""The referrals HTTP API: a thin adapter over ``domain.py``. People (bearer tokens) and agency
systems (API keys) use the same endpoints; the scope rules of the domain decide what each sees,
and another agency's referral answers 404. Every read or write of a referral is audited with
its family id."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from services.referrals import changes, domain
from services.referrals.domain import Actor
from services.referrals.models import Referral, tables
from services.referrals.schemas import (
    AddressIn,
    CommentIn,
    CommentOut,
    FeedArgs,
    FeedOut,
    ReferralArgs,
    ReferralDetail,
    ReferralIn,
    ReferralPage,
    TransitionIn,
)
from shared.auth import audit
from shared.auth.context import current_principal
from shared.auth.policy import require
from shared.auth.roles import ADMIN, AGENCY_STAFF, AGENCY_SYSTEM, COORDINATOR, LEAD_SPECIALIST
from shared.db import utcnow
from shared.http import db_session, idempotent, paginate

referrals = Blueprint(
    "referrals", __name__, url_prefix="/referrals", description="Referrals out to agencies"
)

EVERYONE = (LEAD_SPECIALIST, COORDINATOR, ADMIN, AGENCY_STAFF, AGENCY_SYSTEM)
SENDERS = (LEAD_SPECIALIST, COORDINATOR, ADMIN)
REFERRAL_FIELDS = ["family_id", "family_number", "reason", "contact"]


def actor() -> Actor:
    return Actor.of(current_principal())


def _audit(referral: Referral, action: str, reason: str | None = None) -> None:
    audit.record(
        db_session(),
        tables,
        action=action,
        entity="referral",
        entity_id=referral.id,
        family_id=referral.family_id,
        fields=REFERRAL_FIELDS,
        reason=reason,
    )


def _scoped(stmt: Any, who: Actor) -> Any:
    if who.sender:
        return stmt
    return stmt.where(Referral.agency_id == who.agency_id, Referral.status != "draft")


@referrals.route("", methods=["POST"])
@referrals.arguments(ReferralIn())  # an instance: webargs builds a class anew for each request
@referrals.response(201, ReferralDetail)
@require(*SENDERS)
@idempotent
def create_referral(data: dict[str, Any]) -> Any:
    """Send a referral (or keep it as a draft). Without the family's consent for the agency's
    kind it is refused, unless a coordinator gives ``consent_override_reason`` (audited)."""
    override = data.pop("consent_override_reason", None)
    referral = domain.create_referral(
        db_session(), actor(), data, utcnow(), consent_override_reason=override
    )
    _audit(referral, "create")
    if referral.consent_override:
        _audit(referral, "consent_override", referral.consent_override_reason)
    return referral, 201, {"Location": f"/referrals/{referral.id}"}


@referrals.route("", methods=["GET"])
@referrals.arguments(ReferralArgs, location="query")
@referrals.response(200, ReferralPage)
@require(*EVERYONE)
def list_referrals(args: dict[str, Any]) -> Any:
    """Newest change first; an agency sees only the referrals addressed to it. ``measure_id``
    finds the referrals of a case's plan measures (the case workspace shows their answers)."""
    stmt = _scoped(select(Referral), actor()).order_by(
        Referral.updated_at.desc(), Referral.id.desc()
    )
    for name in ("status", "agency_id", "family_id"):
        if args.get(name):
            stmt = stmt.where(getattr(Referral, name) == args[name])
    if args.get("measure_id"):
        stmt = stmt.where(Referral.measure_id.in_(args["measure_id"]))
    page = paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])
    audit.record_families(
        db_session(),
        tables,
        action=audit.LIST,
        entity="referral",
        family_ids=[r.family_id for r in page["items"]],
        fields=REFERRAL_FIELDS,
    )
    return page


@referrals.route("/changes", methods=["GET"])
@referrals.arguments(FeedArgs, location="query")
@referrals.response(200, FeedOut)
@require(*EVERYONE)
def referral_changes(args: dict[str, Any]) -> Any:
    """Referrals changed since ``since`` (status, claim or comment), oldest change first: an
    agency system polls this with the ``next_cursor`` of its previous answer. No change is
    skipped, not even one whose transaction commits after a poll began (see changes.py); a
    cursor of the former time-based feed answers 400."""
    page = changes.read(
        db_session(), _scoped(select(Referral), actor()), args.get("since"), args["limit"]
    )
    audit.record_each(
        db_session(),
        tables,
        action=audit.READ,
        entity="referral",
        targets=[(r.id, r.family_id) for r in page.items],
        fields=REFERRAL_FIELDS,
    )
    return {"items": page.items, "next_cursor": page.next_cursor}


@referrals.route("/<referral_id>", methods=["GET"])
@referrals.response(200, ReferralDetail)
@require(*EVERYONE)
def get_referral(referral_id: str) -> Any:
    referral = domain.visible_referral(db_session(), actor(), referral_id)
    _audit(referral, "read")
    return referral


@referrals.route("/<referral_id>/transitions", methods=["POST"])
@referrals.arguments(TransitionIn)
@referrals.response(200, ReferralDetail)
@require(*EVERYONE)
@idempotent
def move_referral(data: dict[str, Any], referral_id: str) -> Any:
    """One lifecycle step (FHIR Task status); illegal steps answer 409 naming from and to."""
    session = db_session()
    who = actor()
    referral = domain.visible_referral(session, who, referral_id, for_update=True)
    domain.transition(
        session,
        who,
        referral,
        data["status"],
        utcnow(),
        reason=data.get("reason"),
        outcome=data.get("outcome"),
        expected_version=data.get("version"),
        consent_override_reason=data.get("consent_override_reason"),
    )
    _audit(referral, "update", data.get("reason"))
    if data.get("consent_override_reason") and referral.consent_override:
        _audit(referral, "consent_override", referral.consent_override_reason)
    return referral


@referrals.route("/<referral_id>/agency", methods=["PUT"])
@referrals.arguments(AddressIn)
@referrals.response(200, ReferralDetail)
@require(*SENDERS)
@idempotent
def address_referral(data: dict[str, Any], referral_id: str) -> Any:
    """Address a draft to an agency (overrides the routing rules); send it with a transition."""
    session = db_session()
    referral = domain.visible_referral(session, actor(), referral_id, for_update=True)
    domain.address(session, actor(), referral, data["agency_id"], utcnow())
    _audit(referral, "update")
    return referral


@referrals.route("/<referral_id>/claim", methods=["POST"])
@referrals.response(200, ReferralDetail)
@require(AGENCY_STAFF)
@idempotent
def claim_referral(referral_id: str) -> Any:
    """A staff member of the addressed agency takes the referral on."""
    session = db_session()
    who = actor()
    referral = domain.visible_referral(session, who, referral_id, for_update=True)
    domain.claim(session, who, referral, utcnow())
    _audit(referral, "update")
    return referral


@referrals.route("/<referral_id>/comments", methods=["GET"])
@referrals.response(200, CommentOut(many=True))
@require(*EVERYONE)
def list_comments(referral_id: str) -> Any:
    referral = domain.visible_referral(db_session(), actor(), referral_id)
    audit.record(
        db_session(),
        tables,
        action=audit.READ,
        entity="referral",
        entity_id=referral.id,
        family_id=referral.family_id,
        fields=["comments"],
    )
    return referral.comments


@referrals.route("/<referral_id>/comments", methods=["POST"])
@referrals.arguments(CommentIn)
@referrals.response(201, CommentOut)
@require(*EVERYONE)
@idempotent
def add_comment(data: dict[str, Any], referral_id: str) -> Any:
    session = db_session()
    who = actor()
    referral = domain.visible_referral(session, who, referral_id, for_update=True)
    comment = domain.add_comment(session, who, referral, data["body"], utcnow())
    audit.record(
        session,
        tables,
        action=audit.CREATE,
        entity="referral",
        entity_id=referral.id,
        family_id=referral.family_id,
        fields=["comments"],
    )
    return comment, 201
