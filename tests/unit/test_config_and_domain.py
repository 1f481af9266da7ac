"""Config defaults and the foundation's domain rules, without HTTP or broker."""

from __future__ import annotations

import datetime as dt

import pytest

from services.raids.domain import remember_family
from services.raids.models import KnownFamily
from services.registry.domain import display_name, register_family
from shared import db
from shared.config import ConfigError, load_settings
from shared.errors import RuleViolation


def test_embedded_defaults_need_no_servers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings("registry", env={"OPORA_DATA_DIR": str(tmp_path)})
    assert settings.embedded
    assert settings.database_url.startswith("sqlite:///") and settings.broker_url == "filesystem://"
    again = load_settings("raids", env={"OPORA_DATA_DIR": str(tmp_path)})
    assert (
        settings.jwt_secret and settings.jwt_secret == again.jwt_secret
    )  # one signer for all processes


def test_production_refuses_to_start_without_urls() -> None:
    with pytest.raises(ConfigError, match=r"REGISTRY_DATABASE_URL.*BROKER_URL"):
        load_settings("registry", env={"OPORA_MODE": "production"})


PRODUCTION_ENV = {
    "OPORA_MODE": "production",
    "REGISTRY_DATABASE_URL": "postgresql+psycopg://db/registry",
    "BROKER_URL": "amqp://rabbit//",
    "OPORA_JWKS_URL": "https://idp.test/certs",
    "OPORA_JWT_ISSUER": "https://idp.test",
    "OPORA_JWT_AUDIENCE": "opora",
}


@pytest.mark.parametrize("variable", ["OPORA_JWT_ISSUER", "OPORA_JWT_AUDIENCE"])
def test_production_refuses_to_start_without_issuer_or_audience(variable: str) -> None:
    settings = load_settings("registry", env=PRODUCTION_ENV)
    assert (settings.jwt_issuer, settings.jwt_audience) == ("https://idp.test", "opora")
    with pytest.raises(ConfigError, match=variable):
        load_settings("registry", env={**PRODUCTION_ENV, variable: ""})
    # Migrations read only the database.
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != variable}
    assert load_settings("registry", env=env, database_only=True).database_url


def test_the_maximum_token_lifetime_is_a_setting() -> None:
    assert load_settings("registry", env=PRODUCTION_ENV).jwt_max_lifetime == 43200
    env = {**PRODUCTION_ENV, "OPORA_JWT_MAX_LIFETIME_SECONDS": "3600"}
    assert load_settings("registry", env=env).jwt_max_lifetime == 3600
    for bad in ("0", "-5", "long"):
        with pytest.raises(ConfigError, match="OPORA_JWT_MAX_LIFETIME_SECONDS"):
            load_settings("registry", env={**PRODUCTION_ENV, "OPORA_JWT_MAX_LIFETIME_SECONDS": bad})


def test_bad_values_are_named() -> None:
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY"):
        load_settings(
            "registry", env={"WEB_CONCURRENCY": "many", "OPORA_DATA_DIR": "/tmp/opora-cfg"}
        )
    with pytest.raises(ConfigError, match="unknown service"):
        load_settings("billing")


def test_display_name_prefers_an_adult() -> None:
    members = [
        {"role": "child", "full_name": "Иванов Петя"},
        {"role": "mother", "full_name": "Сидорова Анна"},
    ]
    assert display_name(members) == "Сидорова"


def test_a_family_without_children_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.registry.models import Base

    engine = db.make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    Base.metadata.create_all(engine)
    with db.make_sessionmaker(engine)() as session, pytest.raises(RuleViolation) as info:
        register_family(
            session,
            {
                "category": "tzhs",
                "address": {"region": "R", "district": "D", "settlement": "S"},
                "members": [{"role": "mother", "full_name": "Иванова Анна"}],
            },
        )
    assert "members" in (info.value.errors or {})


def test_read_model_ignores_an_older_version_arriving_late(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.raids.models import Base

    engine = db.make_engine(f"sqlite:///{tmp_path / 'raids.db'}")
    Base.metadata.create_all(engine)
    now = dt.datetime.now(dt.UTC)
    data = {
        "family_id": "f1",
        "number": "F-1",
        "category": "sop",
        "display_name": "Новая",
        "family_version": 2,
        "address": {"district": "D", "settlement": "S"},
    }
    with db.transaction(db.make_sessionmaker(engine)) as session:
        assert remember_family(session, data, now)
        assert not remember_family(
            session, {**data, "display_name": "Старая", "family_version": 1}, now
        )
        assert session.get(KnownFamily, "f1").display_name == "Новая"
