"""The world the family's story runs in, in either mode, with every service as its own processes
(``opora web`` under gunicorn and ``opora worker``, tests/processes.py):

- ``embedded``: OPORA_MODE=embedded and a data folder of its own, as ``opora up`` runs it:
  SQLite files, kombu's file transport, emails as .eml files in ``mail/``, SMS as test-mode
  lines in ``sms/``; migrated and seeded with shared/demo.py exactly as ``opora up`` does.
- ``production``: OPORA_MODE=production on the real PostgreSQL (fresh databases) and RabbitMQ
  (a broker prefix of its own), email to a local aiosmtpd server and SMS to a local HTTP
  gateway (tests/notifications/peers.py); seeded with the same demo data, the agency systems'
  API keys made by an admin over the HTTP API, the police system's RabbitMQ user made with
  deploy/rabbitmq/agency-user.sh. HS256 development tokens stand in for the OIDC provider.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from conftest import unavailable
from notifications.peers import HttpGatewayPeer, SmtpPeer
from processes import Processes

from scenario.parties import FolderOutbox, PeerOutbox, Story
from scenario.world import World
from shared import demo
from shared.config import SERVICES, load_settings

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://opora.test"
AGENCY_USER_SCRIPT = ROOT / "deploy" / "rabbitmq" / "agency-user.sh"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is None or report.failed


def _base_env(data_dir: Path) -> dict[str, str]:
    return {
        "OPORA_DATA_DIR": str(data_dir),
        "OPORA_JWT_SECRET": secrets.token_urlsafe(32),
        "OPORA_LINK_SECRET": secrets.token_urlsafe(32),
        "OPORA_JWT_ISSUER": "https://sso.opora.test/realms/tarnoga",
        "OPORA_JWT_AUDIENCE": "opora",
        "OPORA_PUBLIC_URL": PUBLIC_URL,
        "OPORA_LOG_LEVEL": "INFO",
    }


def _start(env: dict[str, str], log_dir: Path) -> Processes:
    processes = Processes(env, log_dir)
    try:
        processes.start_all(timeout=120)
    except BaseException:
        processes.stop_all()
        raise
    return processes


def _stop(processes: Processes, request: pytest.FixtureRequest) -> None:
    if _failed(request):
        for name in processes.names():
            print(processes.log_tail(name, lines=60))
    processes.stop_all()


@pytest.fixture
def embedded_world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    from shared import db

    data_dir = tmp_path / "var"
    env = {**_base_env(data_dir), "OPORA_MODE": "embedded"}
    for service in SERVICES:  # what `opora up` does before it starts the processes
        db.upgrade(service, load_settings(service, env=env).database_url)
    keys = demo.seed(env)
    processes = _start(env, tmp_path / "logs")
    world = World(
        "embedded",
        env,
        Story({s: processes.url(s) for s in SERVICES}, PUBLIC_URL),
        FolderOutbox(data_dir),
        processes,
        keys,
    )
    try:
        yield world
    finally:
        _stop(processes, request)
        world.close()


def _agency_user(action: str, agency_id: str, amqp_url: str, prefix: str, password: str) -> None:
    env = {
        **os.environ,
        "RABBITMQ_VHOST": pika.URLParameters(amqp_url).virtual_host,
        "OPORA_BROKER_PREFIX": prefix,
        "AGENCY_PASSWORD": password,
    }
    subprocess.run(
        ["bash", str(AGENCY_USER_SCRIPT), action, agency_id],
        env=env,
        check=True,
        capture_output=True,
    )


def _delete_agency_queues(amqp_url: str, prefix: str) -> None:
    from kombu import Connection

    from services.referrals import agency_channel
    from shared.messaging.topology import RETRY_DELAYS_MS, Names

    names = Names(prefix)
    key = agency_channel.INGRESS_SERVICE
    with Connection(amqp_url) as conn:
        channel = conn.channel()
        agency_channel.delete_agency_queues(conn, names, demo.POLICE)
        queues = [names.queue(key), names.dlq(key)]
        queues += [names.retry_queue(key, t) for t in range(1, len(RETRY_DELAYS_MS) + 1)]
        for queue in queues:
            channel.queue_delete(queue)
        for exchange in (agency_channel.AGENCY_EXCHANGE, agency_channel.INGRESS_EXCHANGE):
            channel.exchange_delete(names.exchange(exchange))
        channel.close()


@pytest.fixture
def production_world(
    tmp_path: Path, request: pytest.FixtureRequest, pg_databases: dict[str, str]
) -> Iterator[World]:
    if shutil.which("rabbitmqctl") is None:
        unavailable("no rabbitmqctl to make the police system's RabbitMQ user with")
    system = request.getfixturevalue("system")  # empty tables, a broker prefix of its own
    smtp, gateway = SmtpPeer().start(), HttpGatewayPeer().start()
    env = {
        **_base_env(tmp_path / "data"),
        "OPORA_MODE": "production",
        "BROKER_URL": system.broker_url,
        "OPORA_BROKER_PREFIX": system.prefix,
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "SMTP_FROM": "opora@tarnoga.example",
        "NOTIFICATIONS_SMS_PROVIDERS": f"{gateway.url}?name=gateway",
        **{f"{s.upper()}_DATABASE_URL": url for s, url in pg_databases.items()},
    }
    demo.seed(env)
    password = secrets.token_hex(16)
    _agency_user("create", demo.POLICE, system.broker_url, system.prefix, password)
    processes: Processes | None = None
    world: World | None = None
    try:
        processes = _start(env, tmp_path / "logs")
        story = Story({s: processes.url(s) for s in SERVICES}, PUBLIC_URL)
        world = World("production", env, story, PeerOutbox(smtp, gateway), processes, {}, password)
        admin = world.person("the administrator", "demo-admin", "admin")
        for variable, (agency_id, system_name) in demo.API_KEYS.items():
            created = story.post(
                admin,
                "referrals",
                f"/agencies/{agency_id}/api-keys",
                {"name": system_name},
                expect=201,
            )
            world.keys[variable] = created["key"]
        yield world
    finally:
        if processes is not None:
            _stop(processes, request)
        if world is not None:
            world.close()
        smtp.stop()
        gateway.stop()
        _agency_user("delete", demo.POLICE, system.broker_url, system.prefix, password)
        _delete_agency_queues(system.broker_url, system.prefix)


@pytest.fixture(
    params=[
        pytest.param("embedded", marks=pytest.mark.embedded),
        pytest.param("production", marks=pytest.mark.integration),
    ]
)
def world(request: pytest.FixtureRequest) -> World:
    return request.getfixturevalue(f"{request.param}_world")
