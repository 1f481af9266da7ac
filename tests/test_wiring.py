"""Checks of the repository's own wiring: schemas, handlers, queues, migrations, documents."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from shared import db
from shared.config import APPS, SERVICES
from shared.events import load_all_event_types
from shared.messaging.topology import system_bindings

ROOT = Path(__file__).resolve().parents[1]
ROOMS = (
    "app.py",
    "api.py",
    "schemas.py",
    "models.py",
    "domain.py",
    "handlers.py",
    "events.py",
    "migrations",
)


@pytest.mark.parametrize("service", SERVICES)
def test_service_has_the_house_style_rooms(service: str) -> None:
    folder = ROOT / "services" / service
    missing = [room for room in ROOMS if not (folder / room).exists()]
    assert not missing, f"services/{service} lacks {missing}"


def test_every_handled_event_type_has_a_registered_schema() -> None:
    registry = load_all_event_types()
    for service in SERVICES:
        handlers = importlib.import_module(f"services.{service}.handlers").handlers
        for name, version in handlers.handled():
            registry.get(name, version)  # raises UnknownEvent when there is no schema


def test_every_event_type_is_published_by_the_service_it_names() -> None:
    registry = load_all_event_types()
    for event_type in registry.all():
        assert event_type.producer in SERVICES, event_type.name
        module = importlib.import_module(f"services.{event_type.producer}.events")
        assert event_type.schema.__module__ == module.__name__, (
            f"{event_type.name} is declared outside services/{event_type.producer}/events.py"
        )


def test_every_declared_queue_has_a_consumer_bound_to_what_it_handles() -> None:
    bindings = system_bindings()
    assert set(bindings) == set(SERVICES)
    for service, keys in bindings.items():
        handlers = importlib.import_module(f"services.{service}.handlers").handlers
        assert keys == handlers.routing_keys()


@pytest.mark.parametrize("service", APPS)
def test_one_alembic_head_per_service(service: str) -> None:
    script = ScriptDirectory.from_config(db.alembic_config(service, "sqlite://"))
    assert len(script.get_heads()) == 1


@pytest.mark.parametrize("service", APPS)
def test_migrations_match_the_models(service: str, tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = f"sqlite:///{tmp_path / 'm.db'}"
    db.upgrade(service, url)
    metadata = importlib.import_module(f"services.{service}.models").Base.metadata
    engine = db.make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    engine.dispose()
    assert diff == [], (
        f"models and migrations of {service} differ: run `opora db revision {service} -m ...`"
    )


def test_asyncapi_document_is_generated_from_the_schemas() -> None:
    from shared.asyncapi import render_asyncapi

    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert committed == render_asyncapi(), (
        "docs/asyncapi.yaml is stale: run `opora asyncapi --output docs/asyncapi.yaml`"
    )


def test_the_readme_configuration_table_names_every_variable() -> None:
    """A newcomer configures from the README: every variable the code reads is in its table."""
    from pathlib import Path

    from shared.config import ENV_VARS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in ENV_VARS if f"`{name}`" not in table]
    assert missing == []
