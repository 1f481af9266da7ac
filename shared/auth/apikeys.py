"""API keys for agency systems: ``opk_<key_id>_<secret>``, stored hashed, shown once.

The ``key_id`` finds the row without scanning; the secret proves possession.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from shared.auth.principal import AGENCY_SYSTEM_KIND, Principal
from shared.auth.roles import AGENCY_SYSTEM, ALL_ROLES
from shared.db import utcnow
from shared.errors import Unauthorized
from shared.tables import InfrastructureTables

PREFIX = "opk_"
KEY_PATTERN = re.compile(r"^opk_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
_DUMMY_HASH = "0" * 64


def generate_api_key() -> tuple[str, str]:
    """A new ``(key_id, full_key)``; the secret is 32 random bytes, URL-safe base64."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def hash_secret(full_key: str) -> str:
    """SHA-256 of the whole key.

    Slow password hashes (bcrypt, argon2) protect low-entropy human passwords from guessing.
    These secrets carry 256 random bits, which no one can brute-force even from a fast hash,
    and a slow hash would add its cost to every machine-to-machine request.
    """
    return hashlib.sha256(full_key.encode("ascii")).hexdigest()


def create_api_key(
    session: Session,
    tables: InfrastructureTables,
    *,
    agency_id: str,
    name: str,
    roles: Iterable[str] = (AGENCY_SYSTEM,),
) -> str:
    """Store a new key for ``agency_id`` and return it; this is the only time it is readable."""
    role_list = sorted(set(roles))
    unknown = set(role_list) - ALL_ROLES
    if unknown:
        raise ValueError(f"unknown roles: {', '.join(sorted(unknown))}")
    key_id, full_key = generate_api_key()
    session.execute(
        insert(tables.api_keys).values(
            key_id=key_id,
            secret_hash=hash_secret(full_key),
            agency_id=agency_id,
            name=name,
            roles=role_list,
            created_at=utcnow(),
        )
    )
    return full_key


def revoke_api_key(session: Session, tables: InfrastructureTables, key_id: str) -> bool:
    """Revoke a key; False when there is no such active key."""
    keys = tables.api_keys
    result = session.execute(
        update(keys)
        .where(keys.c.key_id == key_id, keys.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def verify_api_key(session: Session, tables: InfrastructureTables, full_key: str) -> Principal:
    """The agency-system principal of a valid key; Unauthorized otherwise.

    ``last_used_at`` is written at most once a minute so that busy systems do not turn every
    read into a write.
    """
    match = KEY_PATTERN.match(full_key.strip())
    if match is None:
        raise Unauthorized("malformed API key")
    keys = tables.api_keys
    row = session.execute(select(keys).where(keys.c.key_id == match["key_id"])).mappings().first()
    stored = row["secret_hash"] if row is not None else _DUMMY_HASH
    if not hmac.compare_digest(stored, hash_secret(full_key.strip())) or row is None:
        raise Unauthorized("unknown API key")
    if row["revoked_at"] is not None:
        raise Unauthorized("revoked API key")
    now = utcnow()
    last_used = row["last_used_at"]
    if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
        session.execute(update(keys).where(keys.c.key_id == row["key_id"]).values(last_used_at=now))
    return Principal(
        subject=f"apikey:{row['key_id']}",
        roles=frozenset(r for r in row["roles"] if r in ALL_ROLES),
        agency_id=row["agency_id"],
        kind=AGENCY_SYSTEM_KIND,
        name=row["name"],
    )
