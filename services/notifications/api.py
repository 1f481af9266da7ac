"""The notifications HTTP API: messages (status, history, resend), preferences, receipts and
bounces, short links, rules."""

from __future__ import annotations

from typing import Any

from flask import redirect, request
from flask_smorest import Blueprint
from sqlalchemy import func, select

from services.notifications import (
    bounces,
    capabilities,
    delivery,
    domain,
    events,
    preferences,
    receipts,
    rules,
    states,
)
from services.notifications import channels as factory
from services.notifications.channels.http_gateway import NotFinal
from services.notifications.models import Message, Preference
from services.notifications.schemas import (
    BounceOut,
    MessageArgs,
    MessageDetailOut,
    MessagePage,
    PreferencesIn,
    PreferencesOut,
    ReceiptOut,
    ReceiptTokenArgs,
    ReceiptUrlOut,
    ResendIn,
    RulesOut,
)
from shared.auth import audit
from shared.auth.context import current_principal
from shared.auth.links import check_link_token, issue_link_token
from shared.auth.policy import require
from shared.auth.roles import ADMIN, ALL_ROLES, AUDITOR, COORDINATOR, WRITING_ROLES
from shared.db import new_id, utcnow
from shared.errors import Conflict, Forbidden, NotFound, RuleViolation
from shared.http import db_session, idempotent, link_protected, opora_app, paginate

messages = Blueprint(
    "messages",
    __name__,
    url_prefix="/messages",
    description="Emails and SMS, their state and history",
)
prefs_api = Blueprint(
    "preferences", __name__, url_prefix="/preferences", description="How each person is told"
)
receipts_api = Blueprint(
    "receipts", __name__, url_prefix="/receipts", description="Delivery receipts of SMS providers"
)
bounces_api = Blueprint(
    "bounces", __name__, url_prefix="/bounces", description="Late bounces of emails (RFC 3464)"
)
short_links = Blueprint(
    "short links", __name__, url_prefix="/r", description="The short links SMS carry"
)
rules_api = Blueprint("rules", __name__, url_prefix="/rules", description="Who is told what")

EVERYONE = tuple(sorted(ALL_ROLES))
WRITERS = tuple(sorted(WRITING_ROLES))
OVERSEERS = (ADMIN, COORDINATOR, AUDITOR)
RECEIPT_LINK = "sms-receipt"
RECEIPT_LINK_MAX_AGE = 2 * 365 * 24 * 3600  # configured once at the provider; rotate yearly
BOUNCE_LINK = "mail-bounce"
BOUNCE_SUBJECT = "dsn"


# --- messages ----------------------------------------------------------------------------------

# never in a view: the links (a short code or a target may be a capability) and the sealed ones
HIDDEN = frozenset({"link", "short_code", "sealed_links"})


def _visible(message: Message | None, message_id: str) -> Message:
    principal = current_principal()
    if message is None or (
        message.recipient_id != principal.subject and not principal.has_role(*OVERSEERS)
    ):
        raise NotFound(f"no message {message_id}")
    return message


@messages.route("", methods=["GET"])
@messages.arguments(MessageArgs, location="query")
@messages.response(200, MessagePage)
@require(*EVERYONE)
def list_messages(args: dict[str, Any]) -> Any:
    """Messages per recipient, per source event, per state or channel; newest first. People
    without an overseeing role see their own only."""
    principal = current_principal()
    if not principal.has_role(*OVERSEERS):
        if args.get("recipient_id") not in (None, principal.subject):
            raise Forbidden("you may list your own messages only")
        args["recipient_id"] = principal.subject
    stmt = select(Message).order_by(Message.created_at.desc(), Message.id)
    for key in ("source_event_id", "recipient_id", "family_id", "state", "channel"):
        if args.get(key):
            stmt = stmt.where(getattr(Message, key) == args[key])
    page = paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])
    audit.record_families(
        db_session(),
        opora_app().tables,
        action=audit.LIST,
        entity="message",
        family_ids=[m.family_id for m in page["items"]],
        fields=["subject"],
    )
    return page


def message_detail(message: Message) -> dict[str, Any]:
    session = db_session()
    out = {c.key: getattr(message, c.key) for c in Message.__table__.columns if c.key not in HIDDEN}
    out["attachments"] = [a["filename"] for a in message.attachments or []]
    out["history"] = delivery.history_of(session, message.id)
    return out


@messages.route("/<message_id>", methods=["GET"])
@messages.response(200, MessageDetailOut)
@require(*EVERYONE)
def get_message(message_id: str) -> Any:
    """A message's status and history (every state it went through, with provider and why)."""
    message = _visible(db_session().get(Message, message_id), message_id)
    audit.record(
        db_session(),
        opora_app().tables,
        action=audit.READ,
        entity="message",
        entity_id=message.id,
        family_id=message.family_id,
        fields=["subject", "text", "html", "attachments"],
    )
    return message_detail(message)


@messages.route("/<message_id>/resend", methods=["POST"])
@messages.arguments(ResendIn)
@messages.response(201, MessageDetailOut)
@require(ADMIN)
@idempotent
def resend(data: dict[str, Any], message_id: str) -> Any:
    """A new message with the first one's bodies (linked by ``resend_of``), queued now; audited.
    Its capability links are fresh (new signed tokens, a new short code); the first one's
    short link to a capability stops working, and ``notifications.link.reissued`` tells the
    service that checks the signed links to refuse those issued before."""
    session = db_session()
    original = session.get(Message, message_id)
    if original is None:
        raise NotFound(f"no message {message_id}")
    if original.body_purged:
        raise Conflict("the message's body was purged (retention); it cannot be sent again")
    count = session.scalar(select(func.count()).where(Message.resend_of == original.id)) or 0
    now = utcnow()
    settings = opora_app().settings
    sealed, short_code = capabilities.unseal(settings, original.sealed_links), None
    # whole seconds, as the tokens carry them: the fresh ones are issued from this second on
    issued_from = now.replace(microsecond=0)
    if sealed is not None:
        capabilities.check_resend_address(session, original, data.get("address"))
        sealed, short_code = capabilities.reissue(settings, sealed, domain.new_short_code)
        if sealed.target is not None:
            original.short_code = None  # /r/<old code> led to a capability: it ends here
    copy = Message(
        id=new_id(),
        source_event_id=f"resend:{original.id}:{count + 1}",
        source_event_type=original.source_event_type,
        recipient_id=original.recipient_id,
        family_id=original.family_id,
        channel=original.channel,
        address=data.get("address") or original.address,
        priority=original.priority,
        template_key=original.template_key,
        template_version=original.template_version,
        language=original.language,
        subject=original.subject,
        text=original.text,
        html=original.html,
        attachments=original.attachments,
        link=original.link,
        short_code=short_code,
        sealed_links=capabilities.seal(settings, sealed),
        attempts=0,
        next_attempt_at=now,
        provider_index=0,
        resend_of=original.id,
        created_at=now,
        state=None,
    )
    principal = current_principal()
    session.add(copy)
    session.add(
        states.move(copy, "queued", now, detail=f"resend of {original.id} by {principal.subject}")
    )
    for purpose, subject in capabilities.signed_subjects(sealed) if sealed else []:
        events.publish(
            session,
            "notifications.link.reissued",
            {"purpose": purpose, "subject": subject, "issued_from": issued_from,
             "message_id": copy.id, "resend_of": original.id},
        )  # fmt: skip
    audit.record(
        session,
        opora_app().tables,
        action=audit.CREATE,
        entity="message",
        entity_id=copy.id,
        family_id=copy.family_id,
        fields=["resend_of"] + (["address"] if data.get("address") else []),
        reason=data["reason"],
    )
    session.flush()
    return message_detail(copy), 201


# --- preferences -------------------------------------------------------------------------------


def preferences_out(person_id: str) -> dict[str, Any]:
    session = db_session()
    row = session.get(Preference, person_id)
    prefs = preferences.to_prefs(row)
    out = preferences.as_dict(prefs)
    start, end = out.pop("quiet_start"), out.pop("quiet_end")
    out["quiet_hours"] = {"start": start, "end": end} if start and end else None
    out["person_id"] = person_id
    out["source"] = row.source if row is not None else "default"
    return out


@prefs_api.route("/me", methods=["GET"])
@prefs_api.response(200, PreferencesOut)
@require(*EVERYONE)
def my_preferences() -> Any:
    return preferences_out(current_principal().subject)


@prefs_api.route("/me", methods=["PUT"])
@prefs_api.arguments(PreferencesIn)
@prefs_api.response(200, PreferencesOut)
@require(*WRITERS)
def set_my_preferences(data: dict[str, Any]) -> Any:
    """Channels, language, time zone, quiet hours, opt-out of non-urgent, daily digest. From
    now on the agency directory's preferences no longer override these. Not for auditors:
    they read and never write."""
    person_id = current_principal().subject
    try:
        preferences.save_own(db_session(), person_id, data)
    except ValueError as exc:
        raise RuleViolation(str(exc)) from None
    return preferences_out(person_id)


@prefs_api.route("/<person_id>", methods=["GET"])
@prefs_api.response(200, PreferencesOut)
@require(ADMIN)
def person_preferences(person_id: str) -> Any:
    return preferences_out(person_id)


# --- receipts ----------------------------------------------------------------------------------


@receipts_api.route("/<provider>", methods=["POST"])
@receipts_api.arguments(ReceiptTokenArgs, location="query")
@receipts_api.response(200, ReceiptOut)
@link_protected
def receive_receipt(args: dict[str, Any], provider: str) -> Any:
    """An HTTP gateway's delivery callback; the URL carries a signed token for this provider
    (ask ``GET /receipts/<provider>/url``)."""
    check_link_token(
        opora_app().settings, args["token"], RECEIPT_LINK, provider, RECEIPT_LINK_MAX_AGE
    )
    payload = request.get_json(silent=True)
    if payload is None:
        payload = request.form.to_dict()
    if not isinstance(payload, dict) or not payload:
        raise RuleViolation(
            "the receipt is empty or not a JSON object / form", errors={"body": ["required"]}
        )
    try:
        receipt = factory.parse_http_receipt(provider, payload)
    except NotFinal:  # queued, enroute...: acknowledged, nothing to record
        return {"matched": False, "message_id": None, "state": None}
    except (ValueError, KeyError, TypeError) as exc:
        raise RuleViolation(f"the receipt cannot be read: {exc}") from None
    message = receipts.apply_receipt(db_session(), receipt, utcnow())
    return {
        "matched": message is not None,
        "message_id": message.id if message else None,
        "state": message.state if message else None,
    }


@receipts_api.route("/<provider>/url", methods=["GET"])
@receipts_api.response(200, ReceiptUrlOut)
@require(ADMIN)
def receipt_url(provider: str) -> Any:
    """The callback URL to configure at the provider (signed; valid two years)."""
    settings = opora_app().settings
    token = issue_link_token(settings, RECEIPT_LINK, provider)
    return {"url": f"{settings.public_url}/receipts/{provider}?token={token}"}


# --- bounces ----------------------------------------------------------------------------------


@bounces_api.route("", methods=["POST"])
@bounces_api.arguments(ReceiptTokenArgs, location="query")
@bounces_api.response(200, BounceOut)
@link_protected
def receive_bounce(args: dict[str, Any]) -> Any:
    """A delivery status notification (RFC 3464, ``multipart/report``) as the mail system
    received it, in the body (``message/rfc822``). A failed report moves the email to bounced,
    a delivered one to delivered; the URL carries a signed token (``GET /bounces/url``)."""
    check_link_token(
        opora_app().settings, args["token"], BOUNCE_LINK, BOUNCE_SUBJECT, RECEIPT_LINK_MAX_AGE
    )
    raw = request.get_data(cache=False)
    if not raw:
        raise RuleViolation("the body is empty: send the DSN as message/rfc822",
                            errors={"body": ["required"]})  # fmt: skip
    try:
        dsn = bounces.parse_dsn(raw)
    except bounces.NotADsn as exc:
        raise RuleViolation(f"the body is not a delivery status notification: {exc}",
                            errors={"body": [str(exc)]}) from None  # fmt: skip
    outcome = bounces.apply_dsn(db_session(), dsn, utcnow())
    return {
        "matched": outcome.matched,
        "message_id": outcome.message_id,
        "state": outcome.state,
        "action": outcome.action,
    }


@bounces_api.route("/url", methods=["GET"])
@bounces_api.response(200, ReceiptUrlOut)
@require(ADMIN)
def bounce_url() -> Any:
    """The URL the mail system posts DSNs to (signed; valid two years)."""
    settings = opora_app().settings
    token = issue_link_token(settings, BOUNCE_LINK, BOUNCE_SUBJECT)
    return {"url": f"{settings.public_url}/bounces?token={token}"}


# --- short links -------------------------------------------------------------------------------


@short_links.route("/<code>", methods=["GET"])
@short_links.doc(responses={"302": {"description": "to the page the SMS is about"}})
@link_protected
def follow_short_link(code: str) -> Any:
    """An SMS's short link: a redirect to the case, referral, signal or raid it names (which
    asks for a login as usual). The code is the link; only our own pages are targets."""
    message = db_session().scalars(select(Message).where(Message.short_code == code)).first()
    target = message.link if message is not None else None
    if message is not None and message.sealed_links:
        sealed = capabilities.unseal(opora_app().settings, message.sealed_links)
        target = (sealed.target if sealed else None) or target
    if target is None or not domain.short_target_ok(target, opora_app().settings.public_url):
        raise NotFound("no such link")
    return redirect(target, 302)


# --- rules -------------------------------------------------------------------------------------


@rules_api.route("", methods=["GET"])
@rules_api.response(200, RulesOut)
@require(ADMIN, COORDINATOR)
def list_rules() -> Any:
    """Per event type: the recipients, channels, template and priority; reminders too."""
    return {"rules": rules.describe_all()}
