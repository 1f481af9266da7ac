"""Signing people in and out.

- Embedded mode: the sign-in page lists the demo staff from the agency directory (through the
  referrals API) and signs in as one of them with the development signer, as ``opora token``
  does. The role, agency and name come from the directory, never from the form.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from flask import redirect, request, session, url_for
from flask.wrappers import Response

from services.console.people import EXTRA_DEMO_PEOPLE, Person, find_in_directory, staff
from shared.auth.roles import AUDITOR
from shared.auth.tokens import issue_dev_token

REFRESH_MARGIN_SECONDS = 60
"""A token is refreshed this long before it expires (a quarter of its life if that is shorter)."""
DIRECTORY_READER = "console-directory"


def _state() -> Any:
    from services.console.app import console

    return console()


def demo_people() -> list[dict[str, Any]]:
    """Who one may sign in as in the embedded mode: the directory's staff and the README's
    administrator and regional office."""
    from services.console.clients import Clients

    state = _state()
    token = issue_dev_token(
        state.settings, subject=DIRECTORY_READER, roles=[AUDITOR], ttl_seconds=60
    )
    clients: Clients = state.make_clients(token, None)
    return [*staff(clients.referrals.agencies()), *EXTRA_DEMO_PEOPLE]


def sign_in_embedded(person_id: str) -> Person | None:
    """Sign in as a demo person; None when the directory does not know them."""
    chosen = next((p for p in demo_people() if p["person_id"] == person_id), None)
    if chosen is None:
        return None
    state = _state()
    # never longer than the services accept (OPORA_JWT_MAX_LIFETIME_SECONDS)
    ttl = min(state.config.session_hours * 3600, state.settings.jwt_max_lifetime)
    token = issue_dev_token(
        state.settings,
        subject=chosen["person_id"],
        roles=chosen["roles"],
        agency_id=chosen["agency_id"],
        name=chosen["name"],
        ttl_seconds=ttl,
    )
    person = Person(
        subject=chosen["person_id"],
        name=chosen["name"],
        roles=tuple(chosen["roles"]),
        role=chosen["role"],
        agency_id=chosen["agency_id"],
        agency_name=chosen["agency_name"],
        districts=tuple(chosen.get("districts") or ()),
    )
    start_session(person, {"access_token": token, "expires_at": int(time.time()) + ttl})
    return person


def start_session(person: Person, tokens: dict[str, Any]) -> None:
    """A new session id for the signed-in person (the one from before sign-in is dropped)."""
    language = session.get("lang")
    session.clear()
    regenerate = getattr(session, "regenerate", None)
    if regenerate is not None:
        regenerate()
    if language:
        session["lang"] = language
    session["person"] = person.to_dict()
    session["token"] = tokens["access_token"]
    session["token_expires_at"] = int(tokens.get("expires_at") or _expiry(tokens["access_token"]))
    session["token_lifetime"] = int(
        tokens.get("lifetime") or max(1, session["token_expires_at"] - int(time.time()))
    )
    for name in ("refresh_token", "id_token"):
        if tokens.get(name):
            session[name] = tokens[name]


def end_session() -> None:
    language = session.get("lang")
    session.clear()
    regenerate = getattr(session, "regenerate", None)
    if regenerate is not None:
        regenerate()
    if language:
        session["lang"] = language


def refresh_if_needed() -> Response | None:
    """Before a signed-in request: a token about to expire is refreshed at the provider (OIDC)
    or, when it cannot be, the person signs in again."""
    expires_at = int(session.get("token_expires_at") or 0)
    margin = min(REFRESH_MARGIN_SECONDS, int(session.get("token_lifetime") or 0) // 4)
    if expires_at - margin > time.time():
        return None
    if session.get("refresh_token"):
        from services.console import oidc

        if oidc.refresh():
            return None
    end_session()
    session["notice"] = "expired"
    target = request.full_path.rstrip("?") if request.method == "GET" else "/"
    return redirect(url_for("auth.sign_in", next=target))  # type: ignore[return-value]


def _expiry(token: str) -> int:
    claims = jwt.decode(token, options={"verify_signature": False})
    return int(claims.get("exp") or 0)


def person_from_claims(claims: dict[str, Any], agencies: list[dict[str, Any]]) -> Person:
    """The person as the directory knows them; their token's roles decide what they may do."""
    from shared.auth.tokens import principal_from_claims

    principal = principal_from_claims(claims)
    known = find_in_directory(agencies, principal.subject, principal.agency_id)
    roles = tuple(sorted(principal.roles))
    return Person(
        subject=principal.subject,
        name=(known or {}).get("name") or principal.name or principal.subject,
        roles=roles,
        role=(known or {}).get("role") or (roles[0] if roles else ""),
        agency_id=principal.agency_id,
        agency_name=(known or {}).get("agency_name"),
        districts=tuple((known or {}).get("districts") or ()),
    )
