"""The links the system sends (SMS short links, calendar files and feeds) open here, on the one
public origin. The volunteer's referral page (``/referrals/<id>/respond?token=``) belongs in
this blueprint too: its token is its sign-in."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, redirect

from services.console.app import console, console_clients, public_page
from services.console.clients import ApiError

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


def _calendar(body: bytes, filename: str) -> Response:
    response = Response(body, content_type=CALENDAR)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
