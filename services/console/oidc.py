"""Production sign-in: OpenID Connect authorization code with PKCE (S256) at the region's
provider (Keycloak), through Authlib's Flask client.

The ID token is checked by Authlib (signature from the provider's JWKS, ``iss``, ``aud`` = our
client id, nonce, expiry); the provider's discovery document must name the configured issuer
(OpenID Connect Discovery 4.3), and so must the ``iss`` of the authorization response (RFC
9207) when the provider sends one. The access token is what the console sends to the services,
which verify it themselves (OPORA_JWKS_URL, issuer, audience); the console tries it once on the
directory at sign-in, so a token the services refuse (wrong audience or realm) ends the sign-in
with a message instead of a signed-in person who sees nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlencode

import jwt
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask, current_app, session

from services.console.clients import ApiError, ServiceDown
from services.console.config import OidcSettings
from services.console.people import Person

log = logging.getLogger("opora.console")

NAME = "provider"
CALLBACK_PATH = "/sign-in/callback"


class SignInFailed(Exception):
    """The provider's answer cannot sign anyone in; the reason goes to the log only."""


def init_app(app: Flask, settings: OidcSettings, timeout: float) -> None:
    oauth = OAuth(app)
    oauth.register(
        NAME,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        server_metadata_url=f"{settings.issuer}/.well-known/openid-configuration",
        client_kwargs={
            "scope": settings.scopes,
            "code_challenge_method": "S256",
            "timeout": timeout,
        },
    )
    app.extensions["console_oidc"] = oauth


def _client() -> Any:
    return current_app.extensions["console_oidc"].create_client(NAME)


def _settings() -> OidcSettings:
    from services.console.app import console

    oidc = console().config.oidc
    assert oidc is not None
    return oidc


def _metadata() -> dict[str, Any]:
    try:
        metadata: dict[str, Any] = _client().load_server_metadata()
    except Exception as exc:  # any failure to reach the provider
        raise ServiceDown("oidc", type(exc).__name__) from None
    if metadata.get("issuer") != _settings().issuer:
        raise SignInFailed(f"the provider calls itself {metadata.get('issuer')!r}")
    return metadata


def redirect_uri() -> str:
    from services.console.app import console

    return console().settings.public_url + CALLBACK_PATH


def start(target: str) -> Any:
    """Send the browser to the provider; the target page waits in the session."""
    _metadata()
    session["after_sign_in"] = target
    return _client().authorize_redirect(redirect_uri())


def finish(response_issuer: str | None) -> tuple[Person, str]:
    """Complete the code exchange and sign the person in; returns them and the target page."""
    from services.console import auth
    from services.console.app import console

    _metadata()
    if response_issuer is not None and response_issuer != _settings().issuer:
        raise SignInFailed(f"the authorization response names issuer {response_issuer!r}")
    target = str(session.pop("after_sign_in", "/"))
    try:
        token = _client().authorize_access_token()
    except OAuthError as exc:
        raise SignInFailed(f"the provider refused the code: {exc.error}") from None
    except Exception as exc:  # the ID token failed a check (signature, iss, aud, nonce, exp)
        raise SignInFailed(f"ID token refused: {type(exc).__name__}") from None
    access = token.get("access_token")
    if not access:
        raise SignInFailed("no access token")
    claims = _claims(access) or dict(token.get("userinfo") or {})
    clients = console().make_clients(access, None)
    try:
        agencies = clients.referrals.agencies()
    except ApiError as exc:
        raise SignInFailed(f"the services refuse the provider's token: {exc.title}") from None
    person = auth.person_from_claims(claims, agencies)
    auth.start_session(person, _token_fields(token))
    return person, target


def refresh() -> bool:
    """Swap the refresh token for a new access token; False when the provider refuses."""
    refresh_token = session.get("refresh_token")
    if not refresh_token:
        return False
    settings = _settings()
    try:
        endpoint = _metadata()["token_endpoint"]
        # no scope in the request: the new token keeps what was granted (RFC 6749, 6)
        with OAuth2Session(
            settings.client_id,
            settings.client_secret,
            timeout=current_app.extensions["console"].config.api_timeout,
        ) as provider:
            token = provider.refresh_token(endpoint, refresh_token=refresh_token)
    except Exception as exc:  # refused, expired, provider down: sign in again
        log.info("token refresh failed: %s", type(exc).__name__)
        return False
    fields = _token_fields(token)
    session["token"] = fields["access_token"]
    session["token_expires_at"] = fields["expires_at"]
    session["token_lifetime"] = fields["lifetime"]
    if fields.get("refresh_token"):
        session["refresh_token"] = fields["refresh_token"]
    return True


def end_session_url(id_token: str | None) -> str | None:
    """The provider's sign-out page (RP-initiated logout), which sends the browser back to
    our sign-in page; None when the provider has none or cannot be reached."""
    from services.console.app import console

    try:
        endpoint = _metadata().get("end_session_endpoint")
    except (ServiceDown, SignInFailed):
        return None
    if not endpoint:
        return None
    params = {
        "client_id": _settings().client_id,
        "post_logout_redirect_uri": console().settings.public_url + "/sign-in",
    }
    if id_token:
        params["id_token_hint"] = id_token
    return f"{endpoint}?{urlencode(params)}"


def _claims(access_token: str) -> dict[str, Any] | None:
    """The access token's claims, read for display (roles, agency): the services verify it."""
    try:
        claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims


def _token_fields(token: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    expires_at = int(token.get("expires_at") or now + int(token.get("expires_in") or 300))
    return {
        "access_token": token["access_token"],
        "refresh_token": token.get("refresh_token"),
        "id_token": token.get("id_token"),
        "expires_at": expires_at,
        "lifetime": max(1, expires_at - now),
    }
