"""Bearer tokens for people: RS256 from the OIDC provider's JWKS in production, HS256 from
the development signer in the embedded mode."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import jwt

from shared.auth.principal import AGENCY_SYSTEM_KIND, USER, Principal
from shared.auth.roles import AGENCY_SYSTEM, ALL_ROLES
from shared.config import PRODUCTION, Settings
from shared.errors import ServiceUnavailable, Unauthorized

if TYPE_CHECKING:
    from jwt.types import Options

LEEWAY_SECONDS = 30
TIME_CLAIMS = ("exp", "iat", "nbf")

_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidSignatureError, "bad token signature"),
    (jwt.InvalidAudienceError, "wrong token audience"),
    (jwt.InvalidIssuerError, "wrong token issuer"),
    (jwt.InvalidAlgorithmError, "token algorithm not accepted"),
    (jwt.InvalidIssuedAtError, "malformed token"),
    (jwt.DecodeError, "malformed token"),
)


class TokenVerifier:
    """Verifies bearer tokens and turns their claims into a :class:`Principal`.

    With ``settings.jwks_url`` the keys come from the provider and are cached, so a request
    costs no network round trip once the key of its ``kid`` is known.
    """

    def __init__(self, settings: Settings, *, jwks_timeout: float = 5.0) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._max_lifetime = settings.jwt_max_lifetime
        self._jwks: jwt.PyJWKClient | None = None
        self._secret: str | None = None
        if settings.jwks_url:
            self._jwks = jwt.PyJWKClient(
                settings.jwks_url, cache_keys=True, lifespan=300, timeout=jwks_timeout
            )
            self._algorithms = ["RS256"]
        elif settings.jwt_secret:
            self._secret = settings.jwt_secret
            self._algorithms = ["HS256"]
        else:
            raise RuntimeError("no token verification key: set OPORA_JWKS_URL or OPORA_JWT_SECRET")

    def verify(self, token: str) -> Principal:
        claims = self._decode(token)
        return principal_from_claims(claims)

    def _decode(self, token: str) -> dict[str, Any]:
        required = ["exp", "sub"]
        required += ["iss"] if self._issuer else []
        required += ["aud"] if self._audience else []
        options: Options = {"require": required, "verify_aud": bool(self._audience)}
        try:
            key: Any = self._signing_key(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options=options,
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(_reason(exc)) from None
        self._check_times(claims)
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        """PyJWT turns ``"exp": "2000000000"`` into a number and accepts it; RFC 7519 says
        NumericDate, so a string is a malformed token. A token living longer than the maximum
        lifetime is refused whatever its signer meant: a stolen one must not open doors for
        long."""
        for name in TIME_CLAIMS:
            value = claims.get(name)
            if name in claims and not _is_number(value):
                raise Unauthorized("malformed token")
        start = claims["iat"] if "iat" in claims else time.time()
        if claims["exp"] - start > self._max_lifetime + LEEWAY_SECONDS:
            raise Unauthorized(f"token lifetime longer than {self._max_lifetime} s")

    def _signing_key(self, token: str) -> Any:
        if self._jwks is None:
            return self._secret
        try:
            return self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError:
            raise ServiceUnavailable("the token signing keys cannot be fetched; retry") from None
        except jwt.PyJWKClientError:
            raise Unauthorized("token signed by an unknown key") from None


def _reason(exc: jwt.PyJWTError) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "invalid token"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Roles come from ``roles`` or Keycloak's ``realm_access.roles``; unknown names are dropped
    so provider-internal roles (``offline_access``...) never reach the audit trail."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("token has no subject")
    realm = claims.get("realm_access")
    realm_roles = realm.get("roles") if isinstance(realm, dict) else None
    roles = _role_names(claims.get("roles")) | _role_names(realm_roles)
    agency = claims.get("agency")
    name = claims.get("name") or claims.get("preferred_username")
    return Principal(
        subject=subject,
        roles=roles,
        agency_id=str(agency) if agency not in (None, "") else None,
        kind=AGENCY_SYSTEM_KIND if AGENCY_SYSTEM in roles else USER,
        name=name if isinstance(name, str) else None,
    )


def _role_names(value: Any) -> frozenset[str]:
    if not isinstance(value, list):
        return frozenset()
    return frozenset(r for r in value if isinstance(r, str) and r in ALL_ROLES)


def issue_dev_token(
    settings: Settings,
    *,
    subject: str,
    roles: Iterable[str],
    agency_id: str | None = None,
    name: str | None = None,
    ttl_seconds: int = 8 * 3600,
) -> str:
    """A token of the development signer; production trusts only its OIDC provider."""
    if ttl_seconds > settings.jwt_max_lifetime:
        raise ValueError(
            f"ttl {ttl_seconds} s is longer than OPORA_JWT_MAX_LIFETIME_SECONDS "
            f"({settings.jwt_max_lifetime} s)"
        )
    if settings.mode == PRODUCTION:
        raise RuntimeError("the development token signer is disabled in production mode")
    if not settings.jwt_secret:
        raise RuntimeError("no development signer secret (OPORA_JWT_SECRET)")
    roles = list(roles)
    unknown = set(roles) - ALL_ROLES
    if unknown:
        raise ValueError(f"unknown roles: {', '.join(sorted(unknown))}")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "roles": roles, "iat": now, "exp": now + ttl_seconds}
    if agency_id is not None:
        claims["agency"] = agency_id
    if name is not None:
        claims["name"] = name
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
