"""Webhook subscriptions of an agency and their delivery log. The agency's own system (its
API key) manages its own webhooks; coordinators and admins manage any agency's. Another
agency's webhooks answer 404, as its referrals do.

The secret is in the answer of create and rotate only. Those two take no Idempotency-Key on
purpose: a stored answer would keep the secret readable (and in clear) for a day; a retried
create makes a second subscription, visible in the list, and a retried rotate rotates again.

Receivers verify ``X-Opora-Signature: sha256=<hex>`` = HMAC-SHA256(secret,
``"<X-Opora-Timestamp>.<raw body>"``), reject old timestamps (e.g. > 5 minutes), and
deduplicate on ``X-Opora-Delivery``, which is the same on every retry::

    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    ok = hmac.compare_digest("sha256=" + expected, signature_header)
"""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from services.referrals import directory, webhooks
from services.referrals.models import Agency, WebhookDelivery, WebhookSubscription
from services.referrals.schemas_links import (
    DeliveryArgs,
    DeliveryDetail,
    DeliveryPage,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
)
from shared.auth.context import current_principal
from shared.auth.policy import require
from shared.auth.roles import ADMIN, AGENCY_SYSTEM, COORDINATOR
from shared.db import utcnow
from shared.errors import NotFound
from shared.http import db_session, idempotent, opora_app, paginate

hooks = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/agencies",
    description=(
        "Webhooks of an agency: referral events POSTed to its URL, signed with HMAC-SHA256. "
        "To verify: HMAC-SHA256(secret, X-Opora-Timestamp + '.' + raw body) in hex must equal "
        "X-Opora-Signature after 'sha256='; refuse timestamps older than a few minutes; "
        "deduplicate on X-Opora-Delivery (stable across retries)."
    ),
)

MANAGERS = (ADMIN, COORDINATOR, AGENCY_SYSTEM)


def _agency(agency_id: str) -> Agency:
    """An agency system reaches only its own agency."""
    principal = current_principal()
    if not principal.has_role(ADMIN, COORDINATOR) and principal.agency_id != agency_id:
        raise NotFound(f"no agency {agency_id}")
    return directory.get_agency(db_session(), agency_id)


def _created(sub: WebhookSubscription, secret: str) -> dict[str, Any]:
    return {**{name: getattr(sub, name) for name in WebhookOut().fields}, "secret": secret}


@hooks.route("/<agency_id>/webhooks", methods=["POST"])
@hooks.arguments(WebhookIn)
@hooks.response(201, WebhookCreated)
@require(*MANAGERS)
def create_webhook(data: dict[str, Any], agency_id: str) -> Any:
    """Subscribe a URL to referral events; the answer is the only time the secret is shown."""
    agency = _agency(agency_id)
    sub, secret = webhooks.create_subscription(
        db_session(),
        opora_app().settings,
        agency,
        data,
        by=current_principal().subject,
        now=utcnow(),
    )
    location = f"/agencies/{agency_id}/webhooks/{sub.id}"
    return _created(sub, secret), 201, {"Location": location}


@hooks.route("/<agency_id>/webhooks", methods=["GET"])
@hooks.response(200, WebhookOut(many=True))
@require(*MANAGERS)
def list_webhooks(agency_id: str) -> Any:
    _agency(agency_id)
    stmt = (
        select(WebhookSubscription)
        .where(WebhookSubscription.agency_id == agency_id)
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    )
    return list(db_session().scalars(stmt))


@hooks.route("/<agency_id>/webhooks/<webhook_id>", methods=["GET"])
@hooks.response(200, WebhookOut)
@require(*MANAGERS)
def get_webhook(agency_id: str, webhook_id: str) -> Any:
    _agency(agency_id)
    return webhooks.get_subscription(db_session(), agency_id, webhook_id)


@hooks.route("/<agency_id>/webhooks/<webhook_id>", methods=["PATCH"])
@hooks.arguments(WebhookPatch)
@hooks.response(200, WebhookOut)
@require(*MANAGERS)
@idempotent
def change_webhook(data: dict[str, Any], agency_id: str, webhook_id: str) -> Any:
    """Change the URL, the events, or pause it (``active: false``)."""
    _agency(agency_id)
    sub = webhooks.get_subscription(db_session(), agency_id, webhook_id)
    destinations = webhooks.Destinations.of(opora_app().settings)
    return webhooks.update_subscription(db_session(), destinations, sub, data, utcnow())


@hooks.route("/<agency_id>/webhooks/<webhook_id>", methods=["DELETE"])
@hooks.response(204)
@require(*MANAGERS)
@idempotent
def delete_webhook(agency_id: str, webhook_id: str) -> Any:
    """The subscription and its delivery log go."""
    _agency(agency_id)
    db_session().delete(webhooks.get_subscription(db_session(), agency_id, webhook_id))
    return None


@hooks.route("/<agency_id>/webhooks/<webhook_id>/rotate-secret", methods=["POST"])
@hooks.response(201, WebhookCreated)
@require(*MANAGERS)
def rotate_webhook_secret(agency_id: str, webhook_id: str) -> Any:
    """A new secret, effective at once (also for deliveries still pending); shown this once."""
    _agency(agency_id)
    sub = webhooks.get_subscription(db_session(), agency_id, webhook_id)
    secret = webhooks.rotate_secret(db_session(), opora_app().settings, sub, utcnow())
    return _created(sub, secret), 201


@hooks.route("/<agency_id>/webhooks/<webhook_id>/deliveries", methods=["GET"])
@hooks.arguments(DeliveryArgs, location="query")
@hooks.response(200, DeliveryPage)
@require(*MANAGERS)
def list_deliveries(args: dict[str, Any], agency_id: str, webhook_id: str) -> Any:
    """The delivery log, newest first: attempts, last status code, next attempt."""
    _agency(agency_id)
    webhooks.get_subscription(db_session(), agency_id, webhook_id)
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == webhook_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    )
    if args.get("status"):
        stmt = stmt.where(WebhookDelivery.status == args["status"])
    return paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])


@hooks.route("/<agency_id>/webhook-deliveries/<delivery_id>", methods=["GET"])
@hooks.response(200, DeliveryDetail)
@require(*MANAGERS)
def get_delivery(agency_id: str, delivery_id: str) -> Any:
    """One delivery with its payload and every attempt (status code, duration, error)."""
    _agency(agency_id)
    return webhooks.get_delivery(db_session(), agency_id, delivery_id)


@hooks.route("/<agency_id>/webhook-deliveries/<delivery_id>/redeliver", methods=["POST"])
@hooks.response(200, DeliveryDetail)
@require(*MANAGERS)
@idempotent
def redeliver(agency_id: str, delivery_id: str) -> Any:
    """Send a delivered or failed delivery again, under the same id, with fresh attempts."""
    _agency(agency_id)
    delivery = webhooks.get_delivery(db_session(), agency_id, delivery_id)
    return webhooks.redeliver(delivery, utcnow())
