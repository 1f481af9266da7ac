"""The same path with no servers: SQLite files and kombu's file-backed transport."""

from __future__ import annotations

import json
from email import policy
from email.parser import BytesParser

import pytest
from conftest import System, add_coordinator, family_payload
from sqlalchemy import select

from services.notifications.delivery import deliver_queued
from services.notifications.models import Message
from services.raids.models import KnownFamily


def registered_body(system: System):  # type: ignore[no-untyped-def]
    outbox = system.worker("registry").tables.outbox
    return select(outbox.c.body).where(outbox.c.event_type == "registry.family.registered")


pytestmark = pytest.mark.embedded


def test_registry_write_reaches_notifications_and_raids_and_an_email_is_written(
    embedded_system: System,
) -> None:
    system = embedded_system
    add_coordinator(system)
    response = system.client("registry").post("/families", json=family_payload("Жукова"))
    assert response.status_code == 201, response.get_json()
    family = response.get_json()

    assert system.relay("registry") == 2  # family.registered, case.opened
    system.consume("notifications")
    system.consume("raids")

    with system.session("raids") as session:
        assert session.get(KnownFamily, family["id"]) is not None
    worker = system.worker("notifications")
    assert deliver_queued(worker.job_context) == 1
    with system.session("notifications") as session:
        [message] = session.scalars(select(Message)).all()
    assert message.state == "sent"
    [eml] = list((system.settings("notifications").data_dir / "mail").glob("*.eml"))
    email = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    body = email.get_body().get_content()
    assert family["number"] in email["Subject"] and family["number"] in body
    assert f"https://opora.test/families/{family['id']}" in body
    for text in (email["Subject"], body):
        assert "Жукова" not in text  # the coordinator follows the link; no names travel by email


def test_duplicate_delivery_in_embedded_mode_has_one_effect(embedded_system: System) -> None:
    from kombu import Exchange, Producer

    system = embedded_system
    add_coordinator(system)
    system.client("registry").post("/families", json=family_payload())
    with system.session("registry") as session:
        body = session.execute(registered_body(system)).scalar_one()
    system.relay("registry")
    worker = system.worker("notifications")
    with worker.connect() as conn:
        Producer(conn.default_channel).publish(
            body,
            exchange=Exchange(worker.names.events, type="topic"),
            routing_key="registry.family.registered",
            content_type="application/json",
            content_encoding="utf-8",
            declare=[],
        )
    system.consume("notifications")
    with system.session("notifications") as session:
        assert len(session.scalars(select(Message)).all()) == 1
    assert json.loads(body)["type"] == "registry.family.registered"


def test_handler_failure_goes_through_retry_and_then_succeeds(embedded_system: System) -> None:
    """A handler that keeps failing on this delivery goes to the back-off queue, not the DLQ.

    Within one delivery it runs twice: once in the batch, once on its own (careful) path.
    """
    from shared.messaging.consumer import RetryPump

    system = embedded_system
    worker = system.worker("notifications")
    calls = {"n": 0}
    original = worker.handlers._handlers[("registry.family.registered", 1)]

    def flaky(session, event):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("temporary trouble")
        original(session, event)

    worker.handlers._handlers[("registry.family.registered", 1)] = flaky
    try:
        add_coordinator(system)
        system.client("registry").post("/families", json=family_payload())
        system.relay("registry")
        system.consume("notifications")
        assert calls["n"] == 2
        with system.session("notifications") as session:
            assert session.scalars(select(Message)).all() == []
        import time

        time.sleep(1.1)  # the first back-off tier is one second
        pump = RetryPump("notifications", worker.connect, worker.names)
        with worker.connect() as conn:
            assert pump.run_once(conn) == 1
        system.consume("notifications")
        assert calls["n"] == 3
        with system.session("notifications") as session:
            assert len(session.scalars(select(Message)).all()) == 1
    finally:
        worker.handlers._handlers[("registry.family.registered", 1)] = original


def test_correlation_id_travels_from_the_request_into_its_events_and_their_effects(
    embedded_system: System,
) -> None:
    system = embedded_system
    response = system.client("registry").post(
        "/families", json=family_payload(), headers={"X-Correlation-ID": "req-42"}
    )
    assert response.headers["X-Correlation-ID"] == "req-42"
    with system.session("registry") as session:
        body = session.execute(registered_body(system)).scalar_one()
    envelope = json.loads(body)
    assert envelope["correlation_id"] == "req-42"
    assert envelope["causation_id"] is None  # caused by a request, not by another event


def test_no_personal_data_in_logs_along_the_whole_path(
    embedded_system: System, caplog: pytest.LogCaptureFixture
) -> None:
    system = embedded_system
    add_coordinator(system)
    caplog.set_level("DEBUG")
    payload = family_payload("Кондратьева")
    payload["address"]["street"] = "ул. Заозёрная"
    system.client("registry").post("/families", json=payload)
    system.client("registry").post("/families", json={**payload, "category": "wrong"})
    system.relay("registry")
    system.consume("notifications")
    deliver_queued(system.worker("notifications").job_context)
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert caplog.records, "the path logs nothing: this test would prove nothing"
    for secret in ("Кондратьева", "Заозёрная", "1990-05-01", "2015-02-03"):
        assert secret not in logged
