"""Secrets kept in a service's own database, encrypted (Fernet) under a key derived from the
link secret: an agency's webhook secret, a message's capability links. A database dump or a
read-only view then shows ciphertext, never the secret.

Each purpose gets its own key (HKDF with ``opora:<purpose>``), so one kind of sealed value
cannot be passed off as another.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.config import Settings
from shared.errors import ServiceUnavailable


@functools.lru_cache(maxsize=32)
def _fernet_for(master: str, purpose: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"opora:{purpose}".encode()
    ).derive(master.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def fernet(settings: Settings, purpose: str) -> Fernet:
    """The purpose's Fernet (derived once per process: HKDF per message would cost)."""
    master = settings.link_secret or settings.jwt_secret
    if not master:
        raise ServiceUnavailable(f"sealed {purpose} need OPORA_LINK_SECRET to be set")
    return _fernet_for(master, purpose)


def seal(settings: Settings, purpose: str, plain: str) -> str:
    return fernet(settings, purpose).encrypt(plain.encode()).decode()


def unseal(settings: Settings, purpose: str, sealed: str) -> str:
    try:
        return fernet(settings, purpose).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise ServiceUnavailable(
            f"sealed {purpose} cannot be decrypted: was OPORA_LINK_SECRET changed?"
        ) from None
