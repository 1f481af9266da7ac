"""Capability links in messages reach only their recipient.

A signed answer link (``/referrals/<id>/respond?token=...``), any other link that carries a
token, and an SMS's short link ``/r/<code>`` to such a link act for whoever holds them. So a
message's stored bodies carry a marker in their place ("[ссылка для получателя]"), the links
themselves are sealed apart (Fernet, ``messages.sealed_links``) and put back only when the
message is handed to the mail server or the SMS provider. No API view, export or preview of a
stored message can show them, whoever reads it: the recipient reads the link where it was
delivered. A resend issues fresh links (:func:`reissue`); the retention purge drops the sealed
links with the bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from markupsafe import escape
from sqlalchemy.orm import Session

from services.notifications.models import Message, Recipient
from services.notifications.readmodels import phone_or_none
from shared.auth import sealing
from shared.auth.links import issue_link_token
from shared.config import Settings
from shared.errors import RuleViolation

SEALED_PURPOSE = "message-links"
SHORT_PATH = "/r/"
MARKER = "[ссылка для получателя]"
TOKEN_PARAM = "token"


class SignedLink(str):
    """A URL with a signed token issued here for ``purpose`` and ``subject``: a capability, and
    one a resend can issue afresh."""

    purpose: str
    subject: str

    def __new__(cls, url: str, purpose: str, subject: str) -> SignedLink:
        link = super().__new__(cls, url)
        link.purpose = purpose
        link.subject = subject
        return link


def signed_link(settings: Settings, purpose: str, subject: str, path: str) -> SignedLink:
    """``<public_url><path>?token=<signed token for purpose and subject>``."""
    token = issue_link_token(settings, purpose, subject, fresh=True)
    return SignedLink(f"{settings.public_url}{path}?{TOKEN_PARAM}={token}", purpose, subject)


def short_url(public_url: str, code: str) -> str:
    return f"{public_url.rstrip('/')}{SHORT_PATH}{code}"


def is_capability(value: Any) -> bool:
    """A signed link, or any URL whose query carries a token."""
    if isinstance(value, SignedLink):
        return True
    if not isinstance(value, str) or "token=" not in value or "://" not in value:
        return False
    return any(key == TOKEN_PARAM for key, _ in parse_qsl(urlsplit(value).query))


@dataclass(frozen=True)
class Sealed:
    """What a message's marker stands for; ``target`` is where its short link leads (when that
    is a capability, it is kept here and not in ``messages.link``)."""

    links: dict[str, str]  # marker -> the link as the recipient gets it
    target: str | None = None
    # how to issue each link afresh: marker -> (purpose, subject, path) or ("short", "", "")
    origins: dict[str, tuple[str, str, str]] | None = None
    target_origin: tuple[str, str, str] | None = None

    def dumps(self) -> str:
        return json.dumps(
            {
                "links": self.links,
                "target": self.target,
                "origins": self.origins or {},
                "target_origin": self.target_origin,
            }
        )

    @staticmethod
    def loads(text: str) -> Sealed:
        raw = json.loads(text)
        origins = {k: tuple(v) for k, v in (raw.get("origins") or {}).items()}
        target_origin = raw.get("target_origin")
        return Sealed(
            links=dict(raw["links"]),
            target=raw.get("target"),
            origins=origins,
            target_origin=tuple(target_origin) if target_origin else None,
        )


def _origin(link: str) -> tuple[str, str, str] | None:
    if not isinstance(link, SignedLink):
        return None
    return (link.purpose, link.subject, urlsplit(link).path)


def redact(
    parts: Mapping[str, str | None],
    values: Iterable[Any],
    *,
    short: str | None = None,
    target: str | None = None,
) -> tuple[dict[str, str | None], Sealed | None]:
    """``parts`` (subject, text, html as rendered) with every capability among ``values`` and
    the ``short`` link to a capability ``target`` replaced by markers; None when none occurs."""
    found: list[str] = []
    for value in values:
        if is_capability(value) and value not in found:
            found.append(value)
    short_is_capability = bool(short) and is_capability(target)
    if short_is_capability:
        assert short is not None
        found.append(short)
    if not found:
        return dict(parts), None
    out = dict(parts)
    links: dict[str, str] = {}
    origins: dict[str, tuple[str, str, str]] = {}
    # the longest first, so a link that begins another is not cut out of it
    for link in sorted(found, key=len, reverse=True):
        marker = MARKER if not links else f"{MARKER[:-1]} {len(links) + 1}]"
        hit = False
        for name, body in out.items():
            if not body:
                continue
            shown = str(escape(link)) if name == "html" else link
            if shown in body:
                out[name] = body.replace(shown, marker)
                hit = True
        if hit:
            links[marker] = str(link)
            origin = ("short", "", "") if link == short else _origin(link)
            if origin is not None:
                origins[marker] = origin
    if not links and not short_is_capability:
        return out, None
    return out, Sealed(
        links=links,
        target=str(target) if short_is_capability else None,
        origins=origins,
        target_origin=_origin(target) if short_is_capability and target else None,
    )


def seal(settings: Settings, sealed: Sealed | None) -> str | None:
    return None if sealed is None else sealing.seal(settings, SEALED_PURPOSE, sealed.dumps())


def unseal(settings: Settings, stored: str | None) -> Sealed | None:
    return None if not stored else Sealed.loads(sealing.unseal(settings, SEALED_PURPOSE, stored))


def restore(text: str | None, sealed: Sealed | None, *, html: bool = False) -> str | None:
    """A stored body with its markers replaced by the links, for delivery only."""
    if not text or sealed is None:
        return text
    for marker, link in sealed.links.items():
        text = text.replace(marker, str(escape(link)) if html else link)
    return text


def reissue(
    settings: Settings, sealed: Sealed, new_short_code: Callable[[], str]
) -> tuple[Sealed, str | None]:
    """Fresh links for a resend: signed links get new tokens (a new expiry), a short link a
    new code; returns the new sealed links and the new short code (None if none)."""
    target = sealed.target
    if sealed.target_origin is not None:
        purpose, subject, path = sealed.target_origin
        target = signed_link(settings, purpose, subject, path)
    code: str | None = None
    links: dict[str, str] = {}
    for marker, link in sealed.links.items():
        origin = (sealed.origins or {}).get(marker)
        if origin is None:
            links[marker] = link
        elif origin[0] == "short":
            code = code or new_short_code()
            links[marker] = short_url(settings.public_url, code)
        else:
            purpose, subject, path = origin
            links[marker] = signed_link(settings, purpose, subject, path)
    fresh = Sealed(
        links=links,
        target=str(target) if target is not None else None,
        origins=sealed.origins,
        target_origin=sealed.target_origin,
    )
    return fresh, code


def signed_subjects(sealed: Sealed) -> list[tuple[str, str]]:
    """(purpose, subject) of every signed link in ``sealed``: what a resend replaced."""
    found = [o for o in (sealed.origins or {}).values() if o[0] != "short"]
    if sealed.target_origin is not None:
        found.append(sealed.target_origin)
    return sorted({(purpose, subject) for purpose, subject, _ in found})


def check_resend_address(session: Session, message: Message, address: str | None) -> None:
    """A message that carries the recipient's link goes to no other address than the one on
    record for them (the agency directory's): else a resend would hand the link to whoever
    typed the address."""
    if not address:
        return
    recipient = session.get(Recipient, message.recipient_id)
    on_record = None
    if recipient is not None:
        on_record = recipient.email if message.channel == "email" else recipient.phone
    given = address.strip() if message.channel == "email" else phone_or_none(address)
    if given is None or on_record is None or given.lower() != on_record.lower():
        why = (
            "the message carries the recipient's own link: it goes only to their address on record"
        )
        raise RuleViolation(why, errors={"address": [why]})
