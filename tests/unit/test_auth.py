"""Tokens, API keys, role checks and the audit trail, on SQLite and a local JWKS server."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, MetaData, select, update
from sqlalchemy.orm import Session

from shared.auth import Principal, principal_context, require, require_agency
from shared.auth.apikeys import create_api_key, revoke_api_key, verify_api_key
from shared.auth.audit import query_audit, record
from shared.auth.roles import AGENCY_STAFF, COORDINATOR, LEAD_SPECIALIST
from shared.auth.tokens import TokenVerifier, issue_dev_token
from shared.config import Settings, load_settings
from shared.db import make_engine, make_sessionmaker
from shared.errors import Forbidden, Unauthorized
from shared.logging import correlated
from shared.tables import InfrastructureTables, infrastructure_tables


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        "registry",
        env={"OPORA_MODE": "embedded", "OPORA_DATA_DIR": str(tmp_path), "BROKER_URL": "memory://"},
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[tuple[Engine, InfrastructureTables]]:
    metadata = MetaData()
    tables = infrastructure_tables(metadata)
    engine = make_engine(settings.database_url)
    metadata.create_all(engine)
    yield engine, tables
    engine.dispose()


@pytest.fixture
def session(db: tuple[Engine, InfrastructureTables]) -> Iterator[Session]:
    with make_sessionmaker(db[0])() as session:
        yield session


@pytest.fixture
def tables(db: tuple[Engine, InfrastructureTables]) -> InfrastructureTables:
    return db[1]


# --- bearer tokens -----------------------------------------------------------------------------


def test_dev_token_round_trip_keeps_roles_agency_and_name(settings: Settings) -> None:
    token = issue_dev_token(
        settings, subject="staff-7", roles=[AGENCY_STAFF], agency_id="school-3", name="pedagogue"
    )
    principal = TokenVerifier(settings).verify(token)
    assert principal == Principal(
        subject="staff-7",
        roles=frozenset({AGENCY_STAFF}),
        agency_id="school-3",
        kind="user",
        name="pedagogue",
    )
    assert principal.has_role(COORDINATOR, AGENCY_STAFF)
    assert not principal.has_role(COORDINATOR)


def test_expired_token_is_refused_as_expired(settings: Settings) -> None:
    token = issue_dev_token(settings, subject="s", roles=[COORDINATOR], ttl_seconds=-120)
    with pytest.raises(Unauthorized, match="expired"):
        TokenVerifier(settings).verify(token)


def test_token_of_another_secret_is_refused(settings: Settings) -> None:
    token = issue_dev_token(settings.replace(jwt_secret="x" * 40), subject="s", roles=[COORDINATOR])
    with pytest.raises(Unauthorized, match="signature"):
        TokenVerifier(settings).verify(token)


def test_garbage_and_subjectless_tokens_are_refused(settings: Settings) -> None:
    verifier = TokenVerifier(settings)
    with pytest.raises(Unauthorized, match="malformed"):
        verifier.verify("not-a-token")
    no_sub = jwt.encode({"exp": int(time.time()) + 60}, settings.jwt_secret or "", "HS256")
    with pytest.raises(Unauthorized, match="sub"):
        verifier.verify(no_sub)


def test_wrong_audience_is_refused(settings: Settings) -> None:
    strict = settings.replace(jwt_audience="opora")
    token = issue_dev_token(settings.replace(jwt_audience="other"), subject="s", roles=[])
    with pytest.raises(Unauthorized, match="audience"):
        TokenVerifier(strict).verify(token)
    assert TokenVerifier(strict).verify(issue_dev_token(strict, subject="s", roles=[])).subject


def _hs256(settings: Settings, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "s", "roles": [COORDINATOR], "iat": now, "exp": now + 300}
    payload.update(claims)
    return jwt.encode(
        {k: v for k, v in payload.items() if v is not None}, settings.jwt_secret or "", "HS256"
    )


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("bad", ["4102444800", "soon", True, [1], {"t": 1}])
def test_time_claims_that_are_not_numbers_are_malformed(
    settings: Settings, claim: str, bad: Any
) -> None:
    """PyJWT alone reads ``"exp": "4102444800"`` as a number and lets the token in."""
    now = int(time.time())
    if isinstance(bad, str) and bad.isdigit():
        bad = str({"exp": now + 300, "iat": now, "nbf": now}[claim])
    # PyJWT reads ``"exp": true`` as 1 (1970) and calls it expired first: refused either way.
    reason = r"malformed token|expired" if bad is True and claim == "exp" else "malformed token"
    with pytest.raises(Unauthorized, match=reason):
        TokenVerifier(settings).verify(_hs256(settings, **{claim: bad}))


def test_non_finite_time_claims_are_malformed(settings: Settings) -> None:
    """JSON from Python's encoder may carry Infinity and NaN; neither is a NumericDate."""
    for claim in ("exp", "iat", "nbf"):
        for value in (float("inf"), float("nan")):
            with pytest.raises(Unauthorized, match="malformed token"):
                TokenVerifier(settings).verify(_hs256(settings, **{claim: value}))


def test_float_time_claims_are_numbers_too(settings: Settings) -> None:
    now = time.time()
    token = _hs256(settings, iat=now, nbf=now - 1.5, exp=now + 60.25)
    assert TokenVerifier(settings).verify(token).subject == "s"


def test_a_token_without_exp_is_refused(settings: Settings) -> None:
    with pytest.raises(Unauthorized, match="'exp'"):
        TokenVerifier(settings).verify(_hs256(settings, exp=None))


def test_a_token_living_longer_than_the_maximum_is_refused(settings: Settings) -> None:
    assert settings.jwt_max_lifetime == 12 * 3600
    now = int(time.time())
    verifier = TokenVerifier(settings)
    assert verifier.verify(_hs256(settings, iat=now, exp=now + 12 * 3600)).subject == "s"
    with pytest.raises(Unauthorized, match="lifetime"):
        verifier.verify(_hs256(settings, iat=now, exp=now + 12 * 3600 + 120))
    # Issued an hour ago for 13 hours: still too long, although only 12 are left.
    with pytest.raises(Unauthorized, match="lifetime"):
        verifier.verify(_hs256(settings, iat=now - 3600, exp=now + 12 * 3600))
    # Without iat the lifetime counts from now.
    with pytest.raises(Unauthorized, match="lifetime"):
        verifier.verify(_hs256(settings, iat=None, exp=now + 100 * 365 * 86400))
    assert verifier.verify(_hs256(settings, iat=None, exp=now + 3600)).subject == "s"
    short = TokenVerifier(settings.replace(jwt_max_lifetime=600))
    with pytest.raises(Unauthorized, match="lifetime longer than 600 s"):
        short.verify(_hs256(settings, iat=now, exp=now + 3600))


def test_the_dev_signer_keeps_to_the_maximum_lifetime(settings: Settings) -> None:
    with pytest.raises(ValueError, match="OPORA_JWT_MAX_LIFETIME_SECONDS"):
        issue_dev_token(settings, subject="s", roles=[], ttl_seconds=13 * 3600)
    token = issue_dev_token(settings, subject="s", roles=[])  # the default ttl fits
    assert TokenVerifier(settings).verify(token).subject == "s"


def test_issuer_and_audience_set_are_required_in_the_token(settings: Settings) -> None:
    strict = settings.replace(jwt_issuer="https://idp.test", jwt_audience="opora")
    verifier = TokenVerifier(strict)
    assert verifier.verify(_hs256(strict, iss="https://idp.test", aud="opora")).subject == "s"
    with pytest.raises(Unauthorized, match="'iss'"):
        verifier.verify(_hs256(strict, aud="opora"))
    with pytest.raises(Unauthorized, match="'aud'"):
        verifier.verify(_hs256(strict, iss="https://idp.test"))
    with pytest.raises(Unauthorized, match="issuer"):
        verifier.verify(_hs256(strict, iss="https://other.test", aud="opora"))
    with pytest.raises(Unauthorized, match="audience"):
        verifier.verify(_hs256(strict, iss="https://idp.test", aud="console"))


def test_dev_signer_refuses_in_production(settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="production"):
        issue_dev_token(settings.replace(mode="production"), subject="s", roles=[COORDINATOR])


class _Jwks:
    """A JWKS endpoint on 127.0.0.1 serving one public key."""

    def __init__(self, key: rsa.RSAPrivateKey, kid: str) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}).encode()
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks(rsa_key: rsa.RSAPrivateKey) -> Iterator[_Jwks]:
    server = _Jwks(rsa_key, kid="k1")
    yield server
    server.close()


def _rs256(key: rsa.RSAPrivateKey, kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "u-1", "iss": "https://idp.test/realms/opora", "aud": "opora"}
    payload.update({"iat": now, "exp": now + 300, **claims})
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def test_rs256_from_jwks_verifies_keycloak_roles(
    settings: Settings, jwks: _Jwks, rsa_key: rsa.RSAPrivateKey
) -> None:
    oidc = settings.replace(
        jwks_url=jwks.url, jwt_issuer="https://idp.test/realms/opora", jwt_audience="opora"
    )
    verifier = TokenVerifier(oidc)
    token = _rs256(
        rsa_key,
        realm_access={"roles": [LEAD_SPECIALIST, "offline_access"]},
        agency="centre-1",
        preferred_username="specialist1",
    )
    principal = verifier.verify(token)
    assert principal.subject == "u-1"
    assert principal.roles == frozenset({LEAD_SPECIALIST})
    assert principal.agency_id == "centre-1"
    assert principal.name == "specialist1"
    verifier.verify(token)
    assert jwks.hits == 1, "the signing key is cached"

    with pytest.raises(Unauthorized, match="issuer"):
        verifier.verify(_rs256(rsa_key, iss="https://evil.test"))


def test_rs256_signed_by_another_key_is_refused(
    settings: Settings, jwks: _Jwks, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(settings.replace(jwks_url=jwks.url, jwt_audience="opora"))
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthorized, match="signature"):
        verifier.verify(_rs256(impostor, roles=[COORDINATOR]))
    with pytest.raises(Unauthorized, match="unknown key"):
        verifier.verify(_rs256(impostor, kid="k2", roles=[COORDINATOR]))
    hs256 = issue_dev_token(settings.replace(jwt_audience="opora"), subject="s", roles=[])
    with pytest.raises(Unauthorized):
        verifier.verify(hs256)


# --- API keys ----------------------------------------------------------------------------------


def test_api_key_is_stored_hashed_and_verifies(
    session: Session, tables: InfrastructureTables
) -> None:
    key = create_api_key(session, tables, agency_id="school-3", name="school system")
    session.commit()
    key_id, secret = key[4:16], key[17:]
    assert key.startswith(f"opk_{key_id}_") and len(secret) == 43

    row = session.execute(select(tables.api_keys)).mappings().one()
    stored = json.dumps({k: str(v) for k, v in row.items()})
    assert secret not in stored and key not in stored
    assert row["key_id"] == key_id

    principal = verify_api_key(session, tables, key)
    assert principal == Principal(
        subject=f"apikey:{key_id}",
        roles=frozenset({"agency_system"}),
        agency_id="school-3",
        kind="agency_system",
        name="school system",
    )


def test_api_key_last_used_is_written_at_most_once_a_minute(
    session: Session, tables: InfrastructureTables
) -> None:
    key = create_api_key(session, tables, agency_id="a", name="n")
    verify_api_key(session, tables, key)
    first = session.execute(select(tables.api_keys.c.last_used_at)).scalar_one()
    assert first is not None
    verify_api_key(session, tables, key)
    assert session.execute(select(tables.api_keys.c.last_used_at)).scalar_one() == first

    stale = first - dt.timedelta(minutes=5)
    session.execute(update(tables.api_keys).values(last_used_at=stale))
    verify_api_key(session, tables, key)
    assert session.execute(select(tables.api_keys.c.last_used_at)).scalar_one() > stale


def test_wrong_malformed_and_revoked_api_keys_are_refused(
    session: Session, tables: InfrastructureTables
) -> None:
    key = create_api_key(session, tables, agency_id="a", name="n")
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    with pytest.raises(Unauthorized, match="unknown"):
        verify_api_key(session, tables, tampered)
    with pytest.raises(Unauthorized, match="malformed"):
        verify_api_key(session, tables, "opk_short")
    with pytest.raises(Unauthorized, match="unknown"):
        verify_api_key(session, tables, "opk_000000000000_" + key[17:])

    assert revoke_api_key(session, tables, key[4:16]) is True
    with pytest.raises(Unauthorized, match="revoked"):
        verify_api_key(session, tables, key)
    assert revoke_api_key(session, tables, key[4:16]) is False


def test_api_key_refuses_unknown_roles(session: Session, tables: InfrastructureTables) -> None:
    with pytest.raises(ValueError, match="superuser"):
        create_api_key(session, tables, agency_id="a", name="n", roles=["superuser"])


# --- policy ------------------------------------------------------------------------------------

LEAD = Principal("lead-1", frozenset({LEAD_SPECIALIST}), "centre-1")
COORD = Principal("coord-1", frozenset({COORDINATOR}), "kdn")
STAFF = Principal("staff-1", frozenset({AGENCY_STAFF}), "school-3")


def test_require_forbids_other_roles_and_admits_listed_ones() -> None:
    @require(COORDINATOR, LEAD_SPECIALIST)
    def schedule_raid() -> str:
        return "scheduled"

    with principal_context(STAFF), pytest.raises(Forbidden, match="coordinator"):
        schedule_raid()
    with principal_context(LEAD):
        assert schedule_raid() == "scheduled"
    with pytest.raises(Unauthorized):
        schedule_raid()


def test_require_rejects_unknown_role_names() -> None:
    with pytest.raises(ValueError):
        require("cordinator")


def test_require_agency_scopes_staff_but_not_coordinators() -> None:
    with principal_context(STAFF):
        require_agency("school-3")
        with pytest.raises(Forbidden):
            require_agency("police-1")
        with pytest.raises(Forbidden):
            require_agency(None)
    with principal_context(COORD):
        require_agency("police-1")


# --- audit -------------------------------------------------------------------------------------


def test_audit_record_keeps_actor_agency_roles_and_correlation(
    session: Session, tables: InfrastructureTables
) -> None:
    with principal_context(LEAD), correlated("corr-42"):
        record(
            session,
            tables,
            action="read",
            entity="family",
            entity_id="fam-1",
            family_id="fam-1",
            fields=["members", "address"],
            reason="home visit preparation",
        )
    with principal_context(STAFF):
        record(session, tables, action="update", entity="referral", entity_id="r-1")
    session.commit()

    rows = query_audit(session, tables, family_id="fam-1")
    assert len(rows) == 1
    row = rows[0]
    assert row["actor"] == "lead-1"
    assert row["actor_agency"] == "centre-1"
    assert row["actor_roles"] == [LEAD_SPECIALIST]
    assert row["correlation_id"] == "corr-42"
    assert row["action"] == "read" and row["fields"] == ["members", "address"]
    assert row["at"].tzinfo is not None

    assert [r["actor"] for r in query_audit(session, tables)] == ["staff-1", "lead-1"]
    assert [r["entity"] for r in query_audit(session, tables, actor="staff-1")] == ["referral"]


def test_audit_needs_a_principal(session: Session, tables: InfrastructureTables) -> None:
    with pytest.raises(Unauthorized):
        record(session, tables, action="read", entity="family", entity_id="f")
    assert query_audit(session, tables) == []
