"""Test fixtures: fresh PostgreSQL databases and an isolated RabbitMQ namespace per session.

URLs come from OPORA_TEST_POSTGRES_URL / OPORA_TEST_BROKER_URL, defaulting to the
local servers; without them, testcontainers starts servers where Docker runs. With
neither, integration tests are skipped with the reason, and with
OPORA_REQUIRE_SERVICES=1 (set by CI) that skip becomes a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from shared.config import SERVICES

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
REQUIRE = os.environ.get("OPORA_REQUIRE_SERVICES") == "1"

_skipped_reasons: set[str] = set()
# Figures a test wants shown after the run, by section (e.g. the schemathesis run per service).
summaries: dict[str, list[str]] = {}


def unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (OPORA_REQUIRE_SERVICES=1 turns this skip into a failure)")
    _skipped_reasons.add(reason)
    pytest.skip(reason)


def _docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


def _pg_reachable(url: str) -> bool:
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def _amqp_reachable(url: str) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    url = os.environ.get("OPORA_TEST_POSTGRES_URL") or DEFAULT_PG
    if _pg_reachable(url):
        yield url
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver="psycopg") as container:
            yield container.get_connection_url()
        return
    unavailable(f"no PostgreSQL at {url.split('@')[-1]} and no Docker for testcontainers")


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    url = os.environ.get("OPORA_TEST_BROKER_URL") or DEFAULT_AMQP
    if _amqp_reachable(url):
        yield url
        return
    if _docker_available():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13-management") as container:
            params = container.get_connection_params()
            yield f"amqp://guest:guest@{params.host}:{params.port}//"
        return
    unavailable(f"no RabbitMQ at {url.split('@')[-1]} and no Docker for testcontainers")


@pytest.fixture(scope="session")
def pg_databases(postgres_admin_url: str) -> Iterator[dict[str, str]]:
    """One fresh database per service for this test session, migrated to head."""
    from shared import db

    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    run = uuid.uuid4().hex[:8]
    urls = {}
    with admin.connect() as conn:
        for service in SERVICES:
            name = f"opora_test_{run}_{service}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            urls[service] = (
                sa.make_url(postgres_admin_url)
                .set(database=name)
                .render_as_string(hide_password=False)
            )
    for service, url in urls.items():
        db.upgrade(service, url)
    yield urls
    with admin.connect() as conn:
        for url in urls.values():
            conn.execute(
                sa.text(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')
            )
    admin.dispose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped_reasons:
        terminalreporter.write_sep("=", "integration tests skipped", yellow=True)
        for reason in sorted(_skipped_reasons):
            terminalreporter.write_line(f"skipped: {reason}")
        terminalreporter.write_line(
            "Set OPORA_TEST_POSTGRES_URL / OPORA_TEST_BROKER_URL, or run Docker."
        )
    for section, lines in summaries.items():
        terminalreporter.write_sep("=", section)
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def empty_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """An empty database of each kind the services run on, for migration tests; PostgreSQL's
    is made for the test and dropped after it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    name = f"opora_migration_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- a whole system, in one process, for integration and embedded tests -------------------------


class System:
    """Apps and workers of all four services on the given databases and broker."""

    def __init__(
        self, db_urls: dict[str, str], broker_url: str, prefix: str, data_dir: str
    ) -> None:
        self.db_urls = db_urls
        self.broker_url = broker_url
        self.prefix = prefix
        self.data_dir = data_dir
        self._workers: dict[str, object] = {}
        self._apps: dict[str, object] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "OPORA_MODE": "embedded",
            "OPORA_DATA_DIR": self.data_dir,
            "BROKER_URL": self.broker_url,
            "OPORA_BROKER_PREFIX": self.prefix,
            "OPORA_JWT_SECRET": "test-secret-for-hs256-signing-" + self.prefix,
            "OPORA_PUBLIC_URL": "https://opora.test",
        }
        env.update({f"{s.upper()}_DATABASE_URL": url for s, url in self.db_urls.items()})
        env.update(extra)
        return env

    def settings(self, service: str):  # type: ignore[no-untyped-def]
        from shared.config import load_settings

        return load_settings(service, env=self.env())

    def worker(self, service: str):  # type: ignore[no-untyped-def]
        from shared.worker import Worker

        if service not in self._workers:
            self._workers[service] = Worker(self.settings(service))
        return self._workers[service]

    def app(self, service: str):  # type: ignore[no-untyped-def]
        import importlib

        if service not in self._apps:
            module = importlib.import_module(f"services.{service}.app")
            self._apps[service] = module.create_app(
                self.settings(service), engine=self.worker(service).engine
            )
        return self._apps[service]

    def app_with(self, service: str, **options: str):  # type: ignore[no-untyped-def]
        """Another app of ``service`` on the same database, started with other options of its
        own (``RAIDS_*``, ``REGISTRY_*``, ...): options are read once, at start-up."""
        import importlib

        settings = self.settings(service)
        return importlib.import_module(f"services.{service}.app").create_app(
            settings.replace(options={**settings.options, **options}),
            engine=self.worker(service).engine,
        )

    def token(
        self, role: str = "coordinator", agency: str | None = None, subject: str | None = None
    ) -> str:
        from shared.auth.tokens import issue_dev_token

        return issue_dev_token(
            self.settings("registry"),
            subject=subject or f"test-{role}",
            roles=[role],
            agency_id=agency,
        )

    def client(self, service: str, role: str = "coordinator"):  # type: ignore[no-untyped-def]
        client = self.app(service).test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {self.token(role)}"
        return client

    def relay(self, service: str) -> int:
        """Publish everything the service's outbox holds; returns how many."""
        total = 0
        while published := self.worker(service).relay.run_once():
            total += published
        return total

    def consume(self, service: str, idle: float = 0.5) -> None:
        self.worker(service).consumer.run(idle_exit=idle)

    def session(self, service: str):  # type: ignore[no-untyped-def]
        return self.worker(service).sessions()

    def declare(self) -> None:
        self.worker("registry").declare()

    def close(self) -> None:
        for worker in self._workers.values():
            worker.relay._drop_connection()  # type: ignore[attr-defined]
            worker.engine.dispose()  # type: ignore[attr-defined]


def family_payload(
    surname: str = "Иванова", district: str = "Тарногский район", **extra: object
) -> dict:
    payload = {
        "category": "risk_group",
        "address": {
            "region": "Вологодская область",
            "district": district,
            "settlement": "с. Тарногский Городок",
            "street": "ул. Советская",
            "house": "1",
        },
        "members": [
            {
                "role": "mother",
                "full_name": f"{surname} Мария Петровна",
                "birth_date": "1990-05-01",
            },
            {"role": "child", "full_name": f"{surname} Анна Ивановна", "birth_date": "2015-02-03"},
        ],
    }
    payload.update(extra)
    return payload


def add_coordinator(system: System, district: str = "Тарногский район") -> None:
    from services.notifications.models import Recipient

    with system.session("notifications") as session, session.begin():
        session.add(
            Recipient(
                person_id="coord-1",
                roles=["coordinator"],
                districts=[district],
                email="coordinator@district.test",
            )
        )


def _delete_namespace(broker_url: str, prefix: str) -> None:
    from kombu import Connection

    from shared.messaging.topology import RETRY_DELAYS_MS, Names

    names = Names(prefix)
    with Connection(broker_url) as conn:
        channel = conn.channel()
        for service in SERVICES:
            queues = [names.queue(service), names.dlq(service)]
            queues += [names.retry_queue(service, t) for t in range(1, len(RETRY_DELAYS_MS) + 1)]
            for queue in queues:
                channel.queue_delete(queue)
        channel.queue_delete(names.unrouted)
        for exchange in (names.events, names.unrouted, names.dlx, names.retry):
            channel.exchange_delete(exchange)
        channel.close()


@pytest.fixture
def system(pg_databases: dict[str, str], amqp_url: str, tmp_path) -> Iterator[System]:  # type: ignore[no-untyped-def]
    """The real PostgreSQL and RabbitMQ, empty tables, and a broker namespace of this test's own."""
    from shared import db as database

    for url in pg_databases.values():
        engine = database.make_engine(url)
        with engine.begin() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'"
                )
            )
            names = [r[0] for r in rows]
            if names:
                conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{n}"' for n in names)))
        engine.dispose()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    system = System(pg_databases, amqp_url, prefix, str(tmp_path))
    system.declare()
    yield system
    system.close()
    _delete_namespace(amqp_url, prefix)


@pytest.fixture
def embedded_system(tmp_path) -> Iterator[System]:  # type: ignore[no-untyped-def]
    """SQLite files and kombu's file transport in a temporary folder: no servers."""
    from kombu.transport.filesystem import Transport

    from shared import db as database

    # kombu keeps the file transport's bindings in a process-global state and skips a binding
    # it has seen, so a second data folder in one process would get none written.
    Transport.global_state.clear()
    urls = {s: f"sqlite:///{tmp_path / (s + '.db')}" for s in SERVICES}
    for service, url in urls.items():
        database.upgrade(service, url)
    system = System(urls, "filesystem://", "opora", str(tmp_path))
    system.declare()
    yield system
    system.close()


# --- publishing as another service would, straight to the broker ------------------------------


def publish_bytes(
    system: System, body: bytes, routing_key: str = "registry.family.registered"
) -> None:
    """One persistent, confirmed message on the events exchange, bypassing every outbox."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(system.broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(
        f"{system.prefix}.events",
        routing_key,
        body,
        pika.BasicProperties(
            delivery_mode=2, content_type="application/json", message_id=str(uuid.uuid4())
        ),
    )
    connection.close()


def publish_event(
    system: System,
    routing_key: str,
    data: dict,
    *,
    event_id: str | None = None,
    correlation_id: str = "test",
    occurred_at: object = None,
) -> None:
    """A v1 envelope of ``routing_key`` with ``data``, as its producing service would send it
    (``occurred_at``: a datetime, default now)."""
    import datetime as dt
    import json

    moment = occurred_at if isinstance(occurred_at, dt.datetime) else dt.datetime.now(dt.UTC)
    envelope = {
        "id": event_id or str(uuid.uuid4()),
        "type": routing_key,
        "version": 1,
        "occurred_at": moment.isoformat(),
        "producer": routing_key.split(".", 1)[0],
        "correlation_id": correlation_id,
        "causation_id": None,
        "data": data,
    }
    publish_bytes(system, json.dumps(envelope).encode(), routing_key)
