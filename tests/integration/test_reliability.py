"""The foundation's promises on the real RabbitMQ and PostgreSQL.

A registry write's event reaches the notifications worker (a message for the
district coordinator) and the raids worker (its family read model).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from conftest import System, add_coordinator, family_payload, publish_bytes
from sqlalchemy import func, select, text, update

from services.notifications.models import Message
from services.raids.models import KnownFamily
from shared.messaging.dlq import list_dead_letters

pytestmark = pytest.mark.integration


def register(system: System, surname: str = "Иванова") -> str:
    response = system.client("registry").post("/families", json=family_payload(surname))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def messages_for(system: System, family_number_or_event: str | None = None) -> list[Message]:
    with system.session("notifications") as session:
        return list(session.scalars(select(Message)))


def outbox_event_id(system: System, family_id: str) -> str:
    with system.session("registry") as session:
        rows = session.execute(
            text(
                "SELECT event_id, body FROM outbox WHERE event_type = 'registry.family.registered'"
            )
        ).all()
    return next(r.event_id for r in rows if json.loads(r.body)["data"]["family_id"] == family_id)


def dead_letters(system: System, service: str) -> list:
    worker = system.worker(service)
    with worker.connect() as conn:
        return list_dead_letters(conn, worker.names, service)


def test_event_travels_from_registry_to_notifications_and_raids(system: System) -> None:
    add_coordinator(system)
    family_id = register(system, "Петрова")
    assert system.relay("registry") == 2  # family.registered, case.opened
    system.consume("notifications")
    system.consume("raids")

    [message] = messages_for(system)
    assert message.source_event_id == outbox_event_id(system, family_id)
    assert message.address == "coordinator@district.test"
    assert "Петрова" not in (message.subject or "") and "Петрова" not in (message.body or "")
    with system.session("raids") as session:
        known = session.get(KnownFamily, family_id)
        assert known is not None and known.display_name == "Петрова"


def test_rolled_back_transaction_publishes_nothing(system: System) -> None:
    from services.registry.domain import register_family
    from services.registry.schemas import FamilyIn

    add_coordinator(system)
    with system.session("registry") as session:
        session.begin()
        register_family(session, FamilyIn().load(family_payload("Сидорова")))
        session.flush()
        session.rollback()
    assert system.relay("registry") == 0
    system.consume("notifications")
    assert messages_for(system) == []
    with system.session("registry") as session:
        assert session.scalar(text("SELECT count(*) FROM outbox")) == 0


def test_same_message_delivered_twice_has_one_effect(system: System) -> None:
    add_coordinator(system)
    family_id = register(system)
    system.relay("registry")
    with system.session("registry") as session:
        body = session.execute(
            text("SELECT body FROM outbox WHERE event_type = 'registry.family.registered'")
        ).scalar_one()
    publish_bytes(system, body.encode())
    publish_bytes(system, body.encode())
    system.consume("notifications")

    assert len(messages_for(system)) == 1
    with system.session("notifications") as session:
        handled = session.scalar(
            text("SELECT count(*) FROM inbox WHERE message_id = :id"),
            {"id": outbox_event_id(system, family_id)},
        )
    assert handled == 1
    assert dead_letters(system, "notifications") == []


def test_malformed_and_unknown_version_are_dead_lettered_and_later_messages_handled(
    system: System,
) -> None:
    add_coordinator(system)
    publish_bytes(system, b"\x00 not json")
    publish_bytes(system, json.dumps({"id": "nope", "type": "registry.family.registered"}).encode())
    envelope = {
        "id": str(uuid.uuid4()),
        "type": "registry.family.registered",
        "version": 99,
        "occurred_at": "2026-11-23T10:00:00+00:00",
        "producer": "registry",
        "correlation_id": "c-1",
        "causation_id": None,
        "data": {},
    }
    publish_bytes(system, json.dumps(envelope).encode())
    register(system)
    system.relay("registry")
    system.consume("notifications")

    reasons = sorted(letter.reason for letter in dead_letters(system, "notifications"))
    assert len(reasons) == 3, reasons
    assert any("not UTF-8" in r or "not JSON" in r for r in reasons)
    assert any("bad envelope" in r and "id" in r for r in reasons)
    assert any("unknown version 99" in r for r in reasons)
    assert len(messages_for(system)) == 1  # the good message behind them was handled


def test_dead_letters_can_be_replayed(system: System) -> None:
    """A message dead-lettered for a missing handler version comes back when replayed."""
    from shared.messaging.dlq import replay

    add_coordinator(system)
    publish_bytes(system, b"{}")
    system.consume("notifications")
    assert len(dead_letters(system, "notifications")) == 1
    worker = system.worker("notifications")
    with worker.connect(confirm_publish=True) as conn:
        assert replay(conn, worker.names, "notifications") == 1
    system.consume("notifications")
    [letter] = dead_letters(
        system, "notifications"
    )  # still malformed: back in the DLQ, nothing lost
    assert "bad envelope" in letter.reason


@pytest.mark.fault
def test_broker_stopped_while_writes_happen(system: System) -> None:
    rabbitmqctl = _rabbitmqctl_or_skip(system)
    add_coordinator(system)
    ids = []
    subprocess.run([rabbitmqctl, "stop_app"], check=True, capture_output=True, timeout=120)
    try:
        for i in range(20):
            ids.append(register(system, f"Семёнова{i}"))
        assert system.worker("registry").relay.run_once() == 0  # nothing leaves, nothing is lost
        ready = system.client("registry").get("/readyz")
        assert ready.status_code == 503
    finally:
        subprocess.run([rabbitmqctl, "start_app"], check=True, capture_output=True, timeout=180)
    _wait_for_broker(system)
    assert system.relay("registry") == 40  # each: family.registered, case.opened
    system.consume("notifications", idle=1.0)
    sources = {m.source_event_id for m in messages_for(system)}
    assert sources == {outbox_event_id(system, family_id) for family_id in ids}


@pytest.mark.fault
@pytest.mark.parametrize("point", ["consumer.before_commit", "consumer.after_commit"])
def test_consumer_killed_mid_message_has_its_effect_once(
    system: System, tmp_path, point: str
) -> None:
    add_coordinator(system)
    family_id = register(system)
    assert system.relay("registry") == 2
    marker = tmp_path / "killed"
    env = {**os.environ, **system.env(OPORA_FAILPOINTS=f"{point}=kill-once:{marker}")}
    first = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "worker", "notifications"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert first.wait(timeout=60) == -signal.SIGKILL
    assert marker.exists()
    expected_committed = 1 if point == "consumer.after_commit" else 0
    assert len(messages_for(system)) == expected_committed

    second = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "worker", "notifications"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with system.session("notifications") as session:
                if session.scalar(text("SELECT count(*) FROM inbox")):
                    break
            time.sleep(0.2)
        time.sleep(1.0)  # a second effect, if there were one, would land now
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    messages = messages_for(system)
    assert len(messages) == 1
    assert messages[0].source_event_id == outbox_event_id(system, family_id)
    assert dead_letters(system, "notifications") == []


def _rabbitmqctl_or_skip(system: System) -> str:
    import shutil

    from conftest import REQUIRE

    path = shutil.which("rabbitmqctl")
    local = "127.0.0.1" in system.broker_url or "localhost" in system.broker_url
    if not path or not local:
        reason = "stopping the broker needs a local RabbitMQ and rabbitmqctl"
        if REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def _wait_for_broker(system: System, timeout: float = 60) -> None:
    from shared.messaging.broker import broker_reachable

    deadline = time.monotonic() + timeout
    while not broker_reachable(system.settings("registry")):
        assert time.monotonic() < deadline, "broker did not come back"
        time.sleep(0.5)


def test_outbox_rows_are_claimed_once_by_concurrent_relays(system: System) -> None:
    """Two relays on one database: every event published, none twice (SKIP LOCKED)."""
    import threading

    from shared.messaging.relay import OutboxRelay

    for i in range(60):
        register(system, f"Орлова{i}")
    worker = system.worker("registry")
    relays = [
        OutboxRelay(worker.sessions, worker.tables, worker.connect, worker.names, batch_size=7)
        for _ in range(2)
    ]
    counts = [0, 0]

    def drain(index: int) -> None:
        # One relay pipelines (claims the next batch while confirms are pending), one does not.
        while published := relays[index].run_once(depth=1 + index, max_batches=3):
            counts[index] += published

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for relay in relays:
        relay._drop_connection()
    assert sum(counts) == 120  # 60 families: family.registered and case.opened each
    with system.session("registry") as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(worker.tables.outbox)
                .where(worker.tables.outbox.c.sent_at.is_(None))
            )
            == 0
        )


def test_a_pipelined_relay_that_loses_its_connection_postpones_every_batch_in_flight(
    system: System,
) -> None:
    """Batch 1 is waiting for confirms and batch 2 is already published when the connection
    fails: neither is marked sent, both are published later, nothing is lost."""
    from shared.messaging.relay import OutboxRelay

    for i in range(12):
        register(system, f"Белова{i}")  # 24 events: family.registered and case.opened each
    worker = system.worker("registry")
    relay = OutboxRelay(worker.sessions, worker.tables, worker.connect, worker.names, batch_size=5)
    outbox = worker.tables.outbox
    real_wait = relay._await_confirms
    calls = []

    def connection_lost(batch):  # type: ignore[no-untyped-def]
        calls.append(len(batch.rows))
        raise ConnectionResetError("connection reset by peer")

    relay._await_confirms = connection_lost  # type: ignore[method-assign]
    assert relay.run_once(depth=2, max_batches=5) == 0
    assert calls == [5]  # the first settle failed; the second batch was never settled
    with system.session("registry") as session:
        postponed = session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.attempts == 1)
        )
        sent = session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_not(None))
        )
    assert (postponed, sent) == (10, 0)

    relay._await_confirms = real_wait  # type: ignore[method-assign]
    with system.session("registry") as session, session.begin():
        session.execute(update(outbox).values(available_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))
    assert relay.run_once(depth=2, max_batches=10) == 24
    relay._drop_connection()


def _publish_registered(system: System, count: int) -> list[str]:
    """Registry events straight through the registry's outbox (the contract, not its HTTP API)."""
    from services.registry import events

    ids = []
    with system.session("registry") as session, session.begin():
        for i in range(count):
            family_id = str(uuid.uuid4())
            ids.append(family_id)
            events.publish(
                session,
                "registry.family.registered",
                {
                    "family_id": family_id,
                    "number": f"F-{i:06d}",
                    "category": "risk_group",
                    "address": {"region": "R", "district": "D", "settlement": "S"},
                    "display_name": f"Фамилия{i}",
                    "children_count": 1,
                    "family_version": 1,
                },
            )
    return ids


def _ready(system: System, queue: str) -> int:
    with system.worker("raids").connect() as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count


def test_a_backlog_larger_than_prefetch_and_batch_is_consumed_completely(system: System) -> None:
    _publish_registered(system, 450)
    assert system.relay("registry") == 450
    system.consume("raids", idle=1.0)
    with system.session("raids") as session:
        assert session.scalar(select(func.count()).select_from(KnownFamily)) == 450
        assert session.scalar(text("SELECT count(*) FROM inbox")) == 450
    assert _ready(system, system.worker("raids").names.queue("raids")) == 0


def test_one_failing_handler_does_not_undo_the_rest_of_its_batch(system: System) -> None:
    ids = _publish_registered(system, 30)
    poisoned = ids[17]
    worker = system.worker("raids")
    key = ("registry.family.registered", 1)
    original = worker.handlers._handlers[key]

    def fails_for_one(session, event):  # type: ignore[no-untyped-def]
        if event.data["family_id"] == poisoned:
            raise RuntimeError("cannot handle this one")
        original(session, event)

    worker.handlers._handlers[key] = fails_for_one
    try:
        system.relay("registry")
        system.consume("raids", idle=1.0)
    finally:
        worker.handlers._handlers[key] = original
    with system.session("raids") as session:
        known = set(session.scalars(select(KnownFamily.family_id)))
    assert known == set(ids) - {poisoned}
    # On its way through the back-off queues (or, its first delay over, back in the queue):
    # retried later, not lost.
    queues = [worker.names.queue("raids")]
    queues += [worker.names.retry_queue("raids", tier) for tier in range(1, 6)]
    assert sum(_ready(system, queue) for queue in queues) == 1
    assert dead_letters(system, "raids") == []


def test_operator_lists_shows_and_replays_dead_letters_with_the_cli(system: System) -> None:
    from click.testing import CliRunner

    from shared.cli import cli

    publish_bytes(system, b"{}")
    system.consume("notifications")
    runner = CliRunner()
    env = system.env()
    listed = runner.invoke(cli, ["dlq", "list", "notifications"], env=env)
    assert listed.exit_code == 0, listed.output
    [line] = [json.loads(x) for x in listed.stdout.splitlines()]
    assert "bad envelope" in line["reason"]
    shown = runner.invoke(cli, ["dlq", "show", "notifications", line["message_id"]], env=env)
    assert shown.exit_code == 0 and '"headers"' in shown.output
    replayed = runner.invoke(cli, ["dlq", "replay", "notifications", "--all"], env=env)
    assert replayed.exit_code == 0 and "replayed 1" in replayed.output
    assert dead_letters(system, "notifications") == []  # back in the service's queue


def _consumers(system: System, queue: str) -> int | None:
    """Consumers of ``queue``, or None while it does not exist."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(system.broker_url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return None
    finally:
        if connection.is_open:
            connection.close()


def _eventually(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)


def test_a_consumer_the_broker_cancels_consumes_again(system: System) -> None:
    """Its queue deleted under it (an operator, a lost quorum): the consumer declares the queue
    again, with its bindings, and later events reach it."""
    import threading

    add_coordinator(system)
    worker = system.worker("notifications")
    queue = worker.names.queue("notifications")
    stop = threading.Event()
    consuming = threading.Thread(target=worker.consumer.run, args=(stop,))
    consuming.start()
    try:
        _eventually(lambda: _consumers(system, queue) == 1)
        with worker.connect() as conn:
            conn.default_channel.queue_delete(queue)
        _eventually(lambda: _consumers(system, queue) == 1)
        family_id = register(system)
        system.relay("registry")
        _eventually(lambda: len(messages_for(system)) == 1)
    finally:
        stop.set()
        consuming.join(timeout=30)
    assert messages_for(system)[0].source_event_id == outbox_event_id(system, family_id)


def test_a_float_header_from_another_client_does_not_hold_up_the_dead_letter(
    system: System,
) -> None:
    """py-amqp writes float headers; pika reads them as their integer part (a pika limitation,
    shared/messaging/deliveries.py): the message still reaches the dead-letter queue."""
    from kombu import Connection, Producer

    with Connection(system.broker_url) as conn:
        Producer(conn.default_channel).publish(
            b"not json",
            exchange=f"{system.prefix}.events",
            routing_key="registry.family.registered",
            headers={"x-score": 1.5},
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
        )
    system.consume("notifications")
    [letter] = dead_letters(system, "notifications")
    assert "not JSON" in letter.reason
    assert letter.headers["x-score"] == 1
