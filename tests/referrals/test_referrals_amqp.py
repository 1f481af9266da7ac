"""Agency systems over AMQP against the real RabbitMQ and PostgreSQL: referrals reach the agency's
own queue through the outbox, the pika client reads them and moves referrals through the
ingress, the sender is the RabbitMQ user (user_id), and every refusal is a dead letter with its
reason. Agency users are created with deploy/rabbitmq/agency-user.sh (real rabbitmqctl)."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from conftest import System
from kombu import Connection
from sqlalchemy import select
from test_referrals_api import consent

from services.referrals import agency_channel
from services.referrals.agency_client import AgencyClient, InboxMessage
from services.referrals.agency_ingress import (
    IngressConsumer,
    consume_ingress,
    declare_agency_queues,
)
from services.referrals.models import Referral, Signal, tables
from shared.messaging.consumer import DEAD_REASON
from shared.messaging.topology import RETRY_DELAYS_MS, Names

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "agency-user.sh"
REFERRAL = {
    "family_id": "fam-1",
    "family_number": "Т-001",
    "district": "Тарнога",
    "service_code": "truancy_work",
    "reason": "пропуски занятий",
    "urgency": "urgent",
    "deadline": "2030-01-31",
    "contact": {"person_id": "spec-1", "name": "Специалист"},
}


def vhost_of(url: str) -> str:
    return pika.URLParameters(url).virtual_host


def run_script(system: System, *args: str, password: str | None = None) -> None:
    env = {
        **os.environ,
        "RABBITMQ_VHOST": vhost_of(system.broker_url),
        "OPORA_BROKER_PREFIX": system.prefix,
    }
    if password is not None:
        env["AGENCY_PASSWORD"] = password
    subprocess.run(["bash", str(SCRIPT), *args], env=env, check=True, capture_output=True)


class Agencies:
    """Agencies with delivery amqp: in the directory, with a RabbitMQ user and declared queues."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.names = Names(system.prefix)
        self.passwords: dict[str, str] = {}
        self.run = uuid.uuid4().hex[:6]

    def add(self, name: str, kind: str = "school", user: bool = True) -> str:
        agency_id = f"{name}-{self.run}"
        admin = self.system.client("referrals", "admin")
        body = {
            "id": agency_id,
            "name": f"Агентство {name}",
            "kind": kind,
            "districts": ["Тарнога"],
            "services": ["truancy_work"],
            "delivery": "amqp",
        }
        response = admin.post("/agencies", json=body)
        assert response.status_code == 201, response.get_json()
        if user:
            self.passwords[agency_id] = secrets.token_hex(16)
            run_script(self.system, "create", agency_id, password=self.passwords[agency_id])
        return agency_id

    def declare(self) -> list[str]:
        with Connection(self.system.broker_url) as conn, self.system.session("referrals") as s:
            return agency_channel.declare_all(conn, self.names, s)

    def client(self, agency_id: str, **options: Any) -> AgencyClient:
        return AgencyClient(
            self.system.broker_url,
            agency_id,
            password=self.passwords[agency_id],
            prefix=self.system.prefix,
            **options,
        )

    def cleanup(self) -> None:
        for agency_id in self.passwords:
            run_script(self.system, "delete", agency_id)
        key = agency_channel.INGRESS_SERVICE
        with Connection(self.system.broker_url) as conn:
            channel = conn.channel()
            with self.system.session("referrals") as session:
                ids = agency_channel.amqp_agency_ids(session)
            for agency_id in ids:
                agency_channel.delete_agency_queues(conn, self.names, agency_id)
            queues = [self.names.queue(key), self.names.dlq(key)]
            queues += [self.names.retry_queue(key, t) for t in range(1, len(RETRY_DELAYS_MS) + 1)]
            for queue in queues:
                channel.queue_delete(queue)
            for exchange in (agency_channel.AGENCY_EXCHANGE, agency_channel.INGRESS_EXCHANGE):
                channel.exchange_delete(self.names.exchange(exchange))
            channel.close()


@pytest.fixture
def agencies(system: System) -> Iterator[Agencies]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    result = Agencies(system)
    yield result
    result.cleanup()


def send_referral(system: System, agency_id: str) -> str:
    response = system.client("referrals", "coordinator").post(
        "/referrals", json={**REFERRAL, "agency_id": agency_id}
    )
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def drain(client: AgencyClient, timeout: float = 1.0) -> list[InboxMessage]:
    received: list[InboxMessage] = []
    client.receive(received.append, inactivity_timeout=timeout)
    return received


def ingest(system: System) -> None:
    worker = system.worker("referrals")
    IngressConsumer(worker.sessions, worker.tables, worker.confirmed_connection, worker.names).run(
        idle_exit=0.5
    )


def status_of(system: System, referral_id: str) -> str:
    with system.session("referrals") as session:
        return str(session.get(Referral, referral_id).status)  # type: ignore[union-attr]


def dead_letters(system: System) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(properties with headers, body) of the ingress dead-letter queue, consumed."""
    names = Names(system.prefix)
    connection = pika.BlockingConnection(pika.URLParameters(system.broker_url))
    channel = connection.channel()
    result = []
    while True:
        method, properties, body = channel.basic_get(
            names.dlq(agency_channel.INGRESS_SERVICE), auto_ack=True
        )
        if method is None:
            break
        result.append(
            (
                {"headers": properties.headers or {}, "message_id": properties.message_id},
                json.loads(body) if body.startswith(b"{") else {"raw": body},
            )
        )
    connection.close()
    return result


def publish_raw(
    system: System, body: bytes, *, user_id: str | None, message_type: str = "referral.status"
) -> None:
    """As the application user (guest in tests), not as an agency."""
    connection = pika.BlockingConnection(pika.URLParameters(system.broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(
        f"{system.prefix}.agency.ingress",
        "x.referral.status",
        body,
        pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            message_id=str(uuid.uuid4()),
            type=message_type,
            user_id=user_id,
        ),
        mandatory=True,
    )
    connection.close()


# --- the whole path ------------------------------------------------------------------------------


def test_a_referral_reaches_the_agency_queue_and_the_client_moves_it(
    system: System, agencies: Agencies
) -> None:
    school = agencies.add("school")
    consent(system, kinds=("school", "health"))
    assert agencies.declare() == [school]
    referral_id = send_referral(system, school)
    system.relay("referrals")

    with agencies.client(school) as client:
        received = drain(client)
        assert len(received) == 1
        message = received[0]
        assert message.type == "referrals.referral.status_changed"
        assert message.body["format"] == agency_channel.FORMAT_OPORA
        assert message.body["referral"]["id"] == referral_id
        assert message.body["referral"]["status"] == "requested"
        assert message.body["event"]["status"] == "requested"
        assert message.message_id == message.body["id"]
        # the same fields as the agency HTTP API shows
        api = system.client("referrals", "coordinator").get(f"/referrals/{referral_id}").get_json()
        assert set(message.body["referral"]) == set(api)

        first = client.send_status(referral_id, "received")
        client.send_status(referral_id, "accepted")
        client.send_comment(referral_id, "Связались с семьёй")
    ingest(system)
    assert status_of(system, referral_id) == "accepted"

    outbox = tables.outbox
    with system.session("referrals") as session:
        rows = session.execute(
            select(outbox.c.event_type, outbox.c.exchange, outbox.c.body).order_by(outbox.c.id)
        ).all()
    registry_bound = [
        json.loads(r.body)["data"]["status"]
        for r in rows
        if r.exchange == "events" and r.event_type == "referrals.referral.status_changed"
    ]
    assert registry_bound[-2:] == ["received", "accepted"]
    assert any(r.event_type == "referrals.referral.commented" for r in rows)
    assert system.relay("referrals") >= 4
    with system.session("referrals") as session:
        assert session.scalar(select(outbox.c.id).where(outbox.c.sent_at.is_(None))) is None
        audit = session.execute(
            select(tables.audit_log.c.actor).where(tables.audit_log.c.entity_id == referral_id)
        ).scalars()
        assert f"amqp:agency-{school}" in set(audit)

    # the agency hears of its own changes too; a redelivered status message has no second effect
    with agencies.client(school) as client:
        changes = drain(client)
        assert [m.body["referral"]["status"] for m in changes][:2] == ["received", "accepted"]
        client.send_status(referral_id, "received", message_id=first)  # a retry of the first
        client.send_status(referral_id, "in-progress")
    ingest(system)
    assert status_of(system, referral_id) == "in-progress"
    assert dead_letters(system) == []


def test_a_health_agency_gets_the_fhir_form(system: System, agencies: Agencies) -> None:
    from fhir.resources.R4B.bundle import Bundle

    clinic = agencies.add("clinic", kind="health")
    consent(system, kinds=("school", "health"))
    agencies.declare()
    referral_id = send_referral(system, clinic)
    system.relay("referrals")
    with agencies.client(clinic) as client:
        (message,) = drain(client)
    assert message.body["format"] == agency_channel.FORMAT_FHIR and "referral" not in message.body
    bundle = Bundle.model_validate(message.body["fhir"])
    task = bundle.entry[1].resource
    assert task.status == "requested" and task.id == referral_id


def test_refusals_go_to_the_dead_letter_queue_and_the_next_message_is_handled(
    system: System, agencies: Agencies
) -> None:
    school = agencies.add("school")
    other = agencies.add("other")
    consent(system, kinds=("school", "health"))
    agencies.declare()
    mine = send_referral(system, school)
    theirs = send_referral(system, other)

    # RabbitMQ itself refuses a user_id that is not the connection's user: no forging
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as forged:
        publish_raw(system, b"{}", user_id=f"agency-{school}")
    assert forged.value.reply_code == 406

    publish_raw(
        system, json.dumps({"referral_id": mine, "status": "received"}).encode(), user_id=None
    )
    publish_raw(
        system, json.dumps({"referral_id": mine, "status": "received"}).encode(), user_id="guest"
    )
    with agencies.client(other) as client:
        client.send_status(mine, "received")  # another agency's referral
        client.send("referral.status", {"referral_id": theirs})  # no status
        client.send("referral.status", {"referral_id": theirs, "status": "completed"})  # illegal
        client.send("referral.dance", {"referral_id": theirs})  # unknown type
        client.send_status(theirs, "received")  # and a good one after all that
    ingest(system)

    assert status_of(system, mine) == "requested"
    assert status_of(system, theirs) == "received"
    reasons = sorted(str(p["headers"][DEAD_REASON]) for p, _ in dead_letters(system))
    assert len(reasons) == 6, reasons
    expected = [
        "no user_id",
        "is not an agency system's user",
        "no referral",
        "fields status",
        "cannot go from requested to completed",
        "type 'referral.dance'",
    ]
    for fragment in expected:
        assert any(fragment in reason for reason in reasons), (fragment, reasons)
    assert not any("Т-001" in reason or "пропуски" in reason for reason in reasons)


def test_malformed_bodies_are_dead_lettered_and_signals_arrive(
    system: System, agencies: Agencies
) -> None:
    school = agencies.add("school")
    agencies.declare()
    with agencies.client(school) as client:
        channel = client._publishing_channel()
        for body in (b"not json", b"[1, 2]"):
            channel.basic_publish(
                client.ingress,
                f"{school}.signal",
                body,
                pika.BasicProperties(
                    message_id=str(uuid.uuid4()), type="signal", user_id=client.user
                ),
            )
        client.send_signal(
            district="Тарнога",
            observed="пропуски занятий две недели",
            observed_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
            priority="red",
            family={"number": "Т-001"},
        )
    ingest(system)
    reasons = sorted(str(p["headers"][DEAD_REASON]) for p, _ in dead_letters(system))
    assert len(reasons) == 2 and "not JSON" in reasons[0] + reasons[1]
    with system.session("referrals") as session:
        (signal,) = session.scalars(select(Signal)).all()
        assert signal.reporter_agency_id == school and signal.priority == "red"
        assert signal.reporter_id == f"amqp:agency-{school}"


# --- permissions of the agency users (real rabbitmqctl) ------------------------------------------


def test_an_agency_user_reads_only_its_queue_and_writes_only_the_ingress(
    system: System, agencies: Agencies
) -> None:
    school = agencies.add("school")
    other = agencies.add("other")
    agencies.declare()
    names = Names(system.prefix)
    client = agencies.client(school)

    def refused(action: Any) -> int:
        connection = pika.BlockingConnection(client.params)
        try:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
                action(connection.channel())
            return int(caught.value.reply_code)
        finally:
            if connection.is_open:
                connection.close()

    # its own inbox: readable; the ingress: writable with its own routing keys
    with client:
        assert drain(client, timeout=0.3) == []
        client.send_comment("no-such-referral", "проверка связи")
    # not another agency's queue, not the events exchange, no declarations, no foreign keys
    assert (
        refused(lambda ch: ch.basic_get(agency_channel.inbox_name(names, other), auto_ack=False))
        == 403
    )
    assert (
        refused(lambda ch: (ch.confirm_delivery(), ch.basic_publish(names.events, "x.y.z", b"{}")))
        == 403
    )
    assert refused(lambda ch: ch.queue_declare("mine", durable=True)) == 403
    assert (
        refused(
            lambda ch: (
                ch.confirm_delivery(),
                ch.basic_publish(
                    client.ingress,
                    f"{other}.referral.status",
                    b"{}",
                    pika.BasicProperties(user_id=client.user),
                ),
            )
        )
        == 403
    )


def test_the_example_agency_system_accepts_its_referrals(
    system: System, agencies: Agencies
) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "agency_system.py"
    spec = importlib.util.spec_from_file_location("agency_system_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    school = agencies.add("school")
    consent(system, kinds=("school", "health"))
    # the worker's jobs (handlers.py): declare the agencies' queues, consume the ingress
    ctx = system.worker("referrals").job_context
    assert declare_agency_queues(ctx) == [school]
    referral_id = send_referral(system, school)
    system.relay("referrals")
    args = ["--url", system.broker_url, "--agency-id", school]
    args += ["--password", agencies.passwords[school], "--prefix", system.prefix]
    assert example.main([*args, "--idle-exit", "1"]) == 0
    consume_ingress(ctx, idle_exit=0.5)
    assert status_of(system, referral_id) == "accepted"
