"""The links the system sends (SMS short links, calendar files and feeds) open here, on the one
public origin. The volunteer's referral page (``/referrals/<id>/respond?token=``) belongs in
this blueprint too: its token is its sign-in.

The providers' callbacks were built on the same origin (``OPORA_PUBLIC_URL``): an SMS gateway's
delivery receipts (``/receipts/<provider>?token=``) and the mail system's late bounces
(``/bounces?token=``). The console passes exactly those two on to the notifications API as
they came, token and body untouched, so the one public origin stays the only one and the
notifications service stays inside; the API checks the token.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from services.console.app import console, console_clients, public_page
from services.console.clients import ApiError, NotFound, ServiceDown, SignInAgain
from services.console.forms import FormState

links = Blueprint("links", __name__)

CALENDAR = "text/calendar; charset=utf-8"


@links.route("/r/<code>")
@public_page
def short_link(code: str) -> Any:
    """An SMS's short link: notifications knows where it leads; only our own pages are targets."""
    if not code.isalnum() or len(code) > 40:
        abort(404)
    target = console_clients().notifications.short_link_target(code)
    public = console().settings.public_url.rstrip("/") + "/"
    if target is None or not target.startswith(public):
        abort(404)
    return redirect(target, 302)


@links.route("/raids/<raid_id>.ics")
def raid_calendar(raid_id: str) -> Any:
    """The raid's calendar file, from the raids API with the person's own token."""
    answer = console_clients().raids.raid_ics(raid_id)
    return _calendar(answer.content, f"raid-{raid_id}.ics")


@links.route("/people/<person_id>/calendar.ics")
@public_page
def person_calendar(person_id: str) -> Any:
    """A calendar app subscribes to this; the signed ``token`` is checked by the raids API."""
    from flask import request

    token = request.args.get("token", "")
    if not token:
        abort(404)
    try:
        answer = console_clients().raids.person_calendar(person_id, token)
    except ApiError:  # a link that is wrong, expired or not this person's: nothing to show
        abort(404)
    return _calendar(answer.content, "opora-raids.ics")


ANSWER_FIELDS = {"reason": _l("Причина отказа"), "outcome": _l("Результат")}
LINK_ACTIONS = ("accept", "reject", "start", "complete")


def _link_token() -> str:
    token = request.args.get("token", "")
    if not 10 <= len(token) <= 500 or not token.isascii():
        abort(404)
    return token


def _link_gone() -> tuple[str, int]:
    """A link that is wrong, expired or replaced by a newer message's: say so, show nothing."""
    return render_template("links/gone.html"), 410


@links.route("/referrals/<referral_id>/respond")
@public_page
def respond(referral_id: str) -> Any:
    """The volunteer's page (an agency without an account): the referral as the signed link
    shows it, never the family file, and the answers it takes now."""
    token = _link_token()
    try:
        referral = console_clients().referrals.by_link(referral_id, token)
    except (SignInAgain, NotFound):
        return _link_gone()
    return _respond_page(referral_id, token, referral, FormState.new(ANSWER_FIELDS))


@links.route("/referrals/<referral_id>/respond", methods=["POST"])
@public_page
def answer(referral_id: str) -> Any:
    """One answer (accept, reject with a reason, start, complete with an outcome), sent to the
    referrals API with the link's token; then the page again, showing the new state."""
    token = _link_token()
    action = request.form.get("action", "")
    if action not in LINK_ACTIONS:
        abort(400)
    form = FormState.from_request(ANSWER_FIELDS)
    body: dict[str, Any] = {"action": action}
    if action == "reject":
        body["reason"] = form.value("reason") or None
    if action == "complete":
        body["outcome"] = form.value("outcome") or None
    clients = console_clients().referrals
    try:
        clients.answer_by_link(referral_id, token, body)
    except (SignInAgain, NotFound):
        return _link_gone()
    except ApiError as error:
        form.fail(error)
        if error.status == 409 and not error.errors:
            form.errors = {
                "_form": [str(_l("Этот ответ уже не подходит: направление изменилось."))]
            }
        try:
            referral = clients.by_link(referral_id, token)
        except (SignInAgain, NotFound):
            return _link_gone()
        return _respond_page(referral_id, token, referral, form, failed=action), 422
    return redirect(url_for("links.respond", referral_id=referral_id, token=token, done=action))


def _respond_page(
    referral_id: str,
    token: str,
    referral: dict[str, Any],
    form: FormState,
    failed: str | None = None,
) -> str:
    done = request.args.get("done") if request.args.get("done") in LINK_ACTIONS else None
    return render_template(
        "links/respond.html",
        referral=referral,
        referral_id=referral_id,
        token=token,
        form=form,
        failed=failed,
        done=done,
    )


def _calendar(body: bytes, filename: str) -> Response:
    response = Response(body, content_type=CALENDAR)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@links.route("/receipts/<provider>", methods=["POST"])
@public_page
def provider_receipt(provider: str) -> Response:
    """An SMS gateway's delivery receipt, for the notifications API."""
    if not provider.replace("-", "").replace("_", "").isalnum() or len(provider) > 64:
        abort(404)
    return _forward(f"/receipts/{provider}")


@links.route("/bounces", methods=["POST"])
@public_page
def mail_bounce() -> Response:
    """A late bounce (RFC 3464 DSN) from the mail system, for the notifications API."""
    return _forward("/bounces")


PROVIDER_CALLBACKS = (provider_receipt, mail_bounce)
"""Machine callers with a signed token in the URL: no session, no CSRF token (``app.py``)."""


def _forward(path: str) -> Response:
    try:
        answer = console_clients().notifications.forward_callback(
            path, request.query_string, request.get_data(cache=False), request.content_type
        )
    except ServiceDown:  # the provider retries a 503 later; nothing is lost
        response = Response(
            '{"title": "Service Unavailable", "status": 503}',
            status=503,
            content_type="application/problem+json",
        )
        response.headers["Retry-After"] = "60"
        return response
    return Response(
        answer.content,
        status=answer.status_code,
        content_type=answer.headers.get("Content-Type", "application/json"),
    )
