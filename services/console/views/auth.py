"""Sign-in, sign-out and the language switch."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, session, url_for

from services.console import auth as signing
from services.console.app import console, current_person, public_page
from services.console.clients import ServiceDown
from services.console.i18n import LANGUAGES

auth = Blueprint("auth", __name__)
log = logging.getLogger("opora.console")


def safe_next(target: str | None) -> str:
    """Only a path on this site: an open redirect would let a link take a person elsewhere."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target  # browsers read a backslash as a slash: /\\host is //host
        or any(ord(c) < 32 for c in target)
    ):
        return "/"
    return target


@auth.route("/sign-in", methods=["GET"])
@public_page
def sign_in() -> Any:
    target = safe_next(request.args.get("next"))
    if current_person() is not None:
        return redirect(target)
    notice = session.pop("notice", None)
    people: list[dict[str, Any]] = []
    directory_down = False
    if console().config.oidc is None:
        try:
            people = signing.demo_people()
        except ServiceDown:
            directory_down = True
    return render_template(
        "auth/sign_in.html",
        people=people,
        directory_down=directory_down,
        oidc=console().config.oidc is not None,
        next=target,
        notice=notice,
    )


@auth.route("/sign-in", methods=["POST"])
@public_page
def sign_in_as() -> Any:
    """Embedded mode only: sign in as a demo person chosen on the page."""
    if console().config.oidc is not None or not console().settings.embedded:
        return redirect(url_for("auth.sign_in"))
    person = signing.sign_in_embedded(request.form.get("person_id", ""))
    if person is None:
        session["notice"] = "unknown"
        return redirect(url_for("auth.sign_in"))
    return redirect(safe_next(request.form.get("next")))


@auth.route("/sign-in/oidc", methods=["GET"])
@public_page
def oidc_start() -> Any:
    """Production: off to the provider's sign-in page (authorization code with PKCE)."""
    from services.console import oidc

    if console().config.oidc is None:
        return redirect(url_for("auth.sign_in"))
    try:
        return oidc.start(safe_next(request.args.get("next")))
    except oidc.SignInFailed as exc:
        log.warning("sign-in refused: %s", exc)
        session["notice"] = "failed"
        return redirect(url_for("auth.sign_in"))


@auth.route("/sign-in/callback", methods=["GET"])
@public_page
def oidc_callback() -> Any:
    from services.console import oidc

    if console().config.oidc is None:
        return redirect(url_for("auth.sign_in"))
    try:
        _person, target = oidc.finish(request.args.get("iss"))
    except oidc.SignInFailed as exc:
        log.warning("sign-in refused: %s", exc)
        signing.end_session()
        session["notice"] = "failed"
        return redirect(url_for("auth.sign_in"))
    return redirect(safe_next(target))


@auth.route("/sign-out", methods=["POST"])
@public_page
def sign_out() -> Any:
    """Ends the console's session and, with OIDC, the provider's (RP-initiated logout)."""
    id_token = session.get("id_token")
    signing.end_session()
    session["notice"] = "signed_out"
    if console().config.oidc is not None:
        from services.console import oidc

        provider_page = oidc.end_session_url(id_token)
        if provider_page:
            return redirect(provider_page)
    return redirect(url_for("auth.sign_in"))


@auth.route("/language", methods=["POST"])
@public_page
def language() -> Any:
    chosen = request.form.get("lang")
    if chosen in LANGUAGES:
        session["lang"] = chosen
    return redirect(safe_next(request.form.get("next")))
