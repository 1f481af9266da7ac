"""Signed, expiring capability links: for clients that cannot send a bearer token (a calendar
app subscribing to a feed; later, a charity answering a referral without an account).

The token names its purpose and subject, so a link for one thing opens nothing else.
"""

from __future__ import annotations

import datetime as dt
import secrets

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from shared.config import Settings
from shared.errors import ServiceUnavailable, Unauthorized


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    if not settings.link_secret:
        raise ServiceUnavailable("signed links are not configured (OPORA_LINK_SECRET)")
    return URLSafeTimedSerializer(settings.link_secret, salt=f"opora:{purpose}")


def issue_link_token(settings: Settings, purpose: str, subject: str, *, fresh: bool = False) -> str:
    """``fresh``: a random nonce goes in too, so two links issued in the same second differ
    (a resend's link is never the one it replaces)."""
    payload: str | list[str] = [subject, secrets.token_urlsafe(6)] if fresh else subject
    return _serializer(settings, purpose).dumps(payload)


def check_link_token(
    settings: Settings, token: str, purpose: str, subject: str, max_age_seconds: int
) -> dt.datetime:
    """Raises Unauthorized unless ``token`` was issued for this purpose and subject, in time;
    returns when it was issued (whole seconds, UTC), for links a newer one replaced."""
    try:
        signed_subject, issued = _serializer(settings, purpose).loads(
            token, max_age=max_age_seconds, return_timestamp=True
        )
    except SignatureExpired:
        raise Unauthorized("the link has expired: ask for a new one") from None
    except BadSignature:
        raise Unauthorized("the link is not valid") from None
    if isinstance(signed_subject, list) and len(signed_subject) == 2:
        signed_subject = signed_subject[0]  # [subject, nonce]
    if signed_subject != subject:
        raise Unauthorized("the link is not valid")
    return issued
