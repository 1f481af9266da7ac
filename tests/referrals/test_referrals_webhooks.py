"""Webhooks against a real local HTTP receiver that recomputes the HMAC: signature, retries
with back-off after 500s, giving up on 400 or after the last attempt, the delivery id stable
across retries, the secret shown once and stored encrypted, rotation, redelivery, the log API,
and scope: agency A's key never sees or manages agency B's webhooks. Where webhooks may point:
no inside address at subscription or at send time (DNS rebinding), the POST going to the address
checked, unless REFERRALS_WEBHOOK_ALLOW_PRIVATE (which the local receiver here needs)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import System
from sqlalchemy import select, text
from test_referrals_api import consent

from services.referrals.models import WebhookDelivery, WebhookSubscription
from services.referrals.webhook_delivery import Attempt, DeliveryPolicy, deliver_due, retryable
from services.referrals.webhooks import Destinations, RefusedDestination, is_public
from shared.config import ConfigError

pytestmark = pytest.mark.embedded

SCHOOL = {
    "id": "school-1",
    "name": "Школа",
    "kind": "school",
    "districts": ["Тарнога"],
    "services": ["truancy_work"],
    "delivery": "webhook",
}
REFERRAL = {
    "family_id": "fam-1",
    "family_number": "Т-001",
    "district": "Тарнога",
    "service_code": "truancy_work",
    "agency_id": "school-1",
    "reason": "пропуски занятий",
    "contact": {"person_id": "spec-1", "name": "Специалист"},
}
EVENTS = ["referrals.referral.status_changed", "referrals.referral.commented"]


@dataclass
class Receiver:
    """A local HTTP endpoint answering from a script (then 200), verifying every request."""

    secret: str = ""
    script: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def verify(self, headers: Any, body: bytes) -> bool:
        timestamp = headers["X-Opora-Timestamp"]
        expected = hmac.new(
            self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest("sha256=" + expected, headers["X-Opora-Signature"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            code = state.script.pop(0) if state.script else 200
            state.received.append(
                {
                    "path": self.path,
                    "delivery": self.headers["X-Opora-Delivery"],
                    "host": self.headers["Host"],
                    "event": self.headers["X-Opora-Event"],
                    "verified": state.verify(self.headers, body),
                    "json": json.loads(body),
                    "answered": code,
                }
            )
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/opora"
    yield state
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


# The receiver listens on 127.0.0.1: these tests allow private destinations, as a closed
# network would; the rules themselves are tested with that option off.
INSIDE_ALLOWED = Destinations(allow_private=True, https_only=False)
POLICY = DeliveryPolicy(
    max_attempts=4, backoff_seconds=10, timeout_seconds=2, destinations=INSIDE_ALLOWED
)
_apps: weakref.WeakKeyDictionary[System, Any] = weakref.WeakKeyDictionary()


def hooks_app(system: System) -> Any:
    """The referrals app started with ``REFERRALS_WEBHOOK_ALLOW_PRIVATE=1``, one per system."""
    if system not in _apps:
        _apps[system] = system.app_with("referrals", REFERRALS_WEBHOOK_ALLOW_PRIVATE="1")
    return _apps[system]


def bearer(system: System, role: str, agency: str | None = None, *, strict: bool = False) -> Any:
    app = system.app("referrals") if strict else hooks_app(system)
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token(role, agency=agency)}"
    return c


def keyed(system: System, key: str) -> Any:
    c = hooks_app(system).test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"ApiKey {key}"
    return c


def setup(system: System) -> tuple[Any, Any, Any]:
    """Two agencies, a key for each; returns (admin, key client A, key client B)."""
    admin = bearer(system, "admin")
    assert admin.post("/agencies", json=SCHOOL).status_code == 201
    other = {**SCHOOL, "id": "school-2", "name": "Другая школа"}
    assert admin.post("/agencies", json=other).status_code == 201
    keys = [
        admin.post(f"/agencies/{a}/api-keys", json={"name": "ИС"}).get_json()["key"]
        for a in ("school-1", "school-2")
    ]
    consent(system, kinds=("school",))
    return admin, keyed(system, keys[0]), keyed(system, keys[1])


def subscribe(system: System, key_client: Any, receiver: Receiver) -> dict[str, Any]:
    created = key_client.post(
        "/agencies/school-1/webhooks", json={"url": receiver.url, "events": EVENTS}
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    receiver.secret = body["secret"]
    return body


def run(system: System, clock: Clock, policy: DeliveryPolicy = POLICY) -> int:
    return deliver_due(
        system.worker("referrals").sessions, system.settings("referrals"), policy, clock=clock
    )


def test_signed_delivery_retried_after_two_500s_with_a_stable_id(
    embedded_system: System, receiver: Receiver
) -> None:
    _, school, _ = setup(embedded_system)
    hook = subscribe(embedded_system, school, receiver)
    assert hook["secret"].startswith("whsec_") and hook["secret_hint"] == "…" + hook["secret"][-4:]
    lead = bearer(embedded_system, "lead_specialist")
    referral = lead.post("/referrals", json=REFERRAL).get_json()

    clock = Clock()
    receiver.script = [500, 500]
    assert run(embedded_system, clock) == 1
    assert run(embedded_system, clock) == 0  # backing off: not due yet
    clock.advance(POLICY.backoff_seconds * 1 + 1)  # at most 10 s after the first failure
    assert run(embedded_system, clock) == 1
    assert run(embedded_system, clock) == 0
    clock.advance(POLICY.backoff_seconds * 2 + 1)
    assert run(embedded_system, clock) == 1
    clock.advance(3600)
    assert run(embedded_system, clock) == 0  # delivered: never again

    assert [r["answered"] for r in receiver.received] == [500, 500, 200]
    assert all(r["verified"] for r in receiver.received)
    assert len({r["delivery"] for r in receiver.received}) == 1
    first = receiver.received[0]
    assert first["event"] == "referrals.referral.status_changed"
    payload = first["json"]
    assert payload["id"] == first["delivery"]
    assert payload["data"]["status"] == "requested"
    assert payload["referral"]["id"] == referral["id"]
    assert payload["referral"]["number"] == referral["number"]
    # only what the referral carries: no names, addresses or birth dates of the family
    assert "members" not in json.dumps(payload) and "address" not in payload["referral"]

    log = school.get(f"/agencies/school-1/webhooks/{hook['id']}/deliveries").get_json()
    assert log["total"] == 1
    entry = log["items"][0]
    assert entry["status"] == "delivered" and entry["attempts"] == 3
    assert entry["next_attempt_at"] is None and entry["last_status_code"] == 200
    detail = school.get(f"/agencies/school-1/webhook-deliveries/{entry['id']}").get_json()
    assert [a["status_code"] for a in detail["log"]] == [500, 500, 200]
    assert all(a["duration_ms"] >= 0 for a in detail["log"])

    # a redelivery goes again under the same id
    again = school.post(f"/agencies/school-1/webhook-deliveries/{entry['id']}/redeliver")
    assert again.status_code == 200 and again.get_json()["status"] == "pending"
    assert run(embedded_system, clock) == 1
    assert receiver.received[-1]["delivery"] == entry["id"] and receiver.received[-1]["verified"]


def test_a_400_fails_at_once_and_500s_give_up_after_the_last_attempt(
    embedded_system: System, receiver: Receiver
) -> None:
    _, school, _ = setup(embedded_system)
    hook = subscribe(embedded_system, school, receiver)
    lead = bearer(embedded_system, "lead_specialist")
    referral = lead.post("/referrals", json=REFERRAL).get_json()
    clock = Clock()
    receiver.script = [400]
    assert run(embedded_system, clock) == 1
    clock.advance(3600)
    assert run(embedded_system, clock) == 0
    comment = lead.post(f"/referrals/{referral['id']}/comments", json={"body": "позвоните"})
    assert comment.status_code == 201
    receiver.script = [500, 503, 429, 502]
    for _ in range(POLICY.max_attempts):
        assert run(embedded_system, clock) == 1
        clock.advance(POLICY.max_backoff_seconds)
    assert run(embedded_system, clock) == 0
    failed = school.get(
        f"/agencies/school-1/webhooks/{hook['id']}/deliveries?status=failed"
    ).get_json()
    by_event = {i["event"]: i for i in failed["items"]}
    assert by_event["referrals.referral.status_changed"]["attempts"] == 1
    assert by_event["referrals.referral.status_changed"]["last_status_code"] == 400
    assert by_event["referrals.referral.commented"]["attempts"] == POLICY.max_attempts
    assert by_event["referrals.referral.commented"]["last_status_code"] == 502
    assert [r["answered"] for r in receiver.received] == [400, 500, 503, 429, 502]


def test_connection_errors_are_retried_and_logged(
    embedded_system: System, receiver: Receiver
) -> None:
    _, school, _ = setup(embedded_system)
    hook = subscribe(embedded_system, school, receiver)
    closed = "http://127.0.0.1:9/nothing-listens-here"  # the discard port: refused
    assert (
        school.patch(f"/agencies/school-1/webhooks/{hook['id']}", json={"url": closed}).status_code
        == 200
    )
    bearer(embedded_system, "lead_specialist").post("/referrals", json=REFERRAL)
    clock = Clock()
    assert run(embedded_system, clock) == 1
    item = school.get(f"/agencies/school-1/webhooks/{hook['id']}/deliveries").get_json()["items"][0]
    assert item["status"] == "pending" and item["last_status_code"] is None
    assert item["last_error"] and item["next_attempt_at"] is not None
    # the receiver comes back: the next attempt reaches it
    school.patch(f"/agencies/school-1/webhooks/{hook['id']}", json={"url": receiver.url})
    clock.advance(POLICY.backoff_seconds + 1)
    assert run(embedded_system, clock) == 1
    assert receiver.received[0]["verified"] and receiver.received[0]["delivery"] == item["id"]


def test_retry_classification_and_backoff_with_jitter() -> None:
    assert retryable(Attempt(None, "timeout", 5))
    assert retryable(Attempt(500, None, 5)) and retryable(Attempt(503, None, 5))
    assert retryable(Attempt(408, None, 5)) and retryable(Attempt(429, None, 5))
    assert not retryable(Attempt(400, None, 5)) and not retryable(Attempt(404, None, 5))
    assert not retryable(Attempt(301, None, 5))
    policy = DeliveryPolicy(backoff_seconds=30, max_backoff_seconds=600)
    assert policy.backoff(1, lambda: 0.0) == dt.timedelta(seconds=15)
    assert policy.backoff(1, lambda: 1.0) == dt.timedelta(seconds=30)
    assert policy.backoff(3, lambda: 1.0) == dt.timedelta(seconds=120)
    assert policy.backoff(30, lambda: 1.0) == dt.timedelta(seconds=600)


def test_secret_shown_once_stored_encrypted_and_rotated(
    embedded_system: System, receiver: Receiver
) -> None:
    _, school, _ = setup(embedded_system)
    hook = subscribe(embedded_system, school, receiver)
    listed = school.get("/agencies/school-1/webhooks").get_json()
    one = school.get(f"/agencies/school-1/webhooks/{hook['id']}").get_json()
    assert "secret" not in listed[0] and "secret" not in one
    assert hook["secret"] not in json.dumps(listed) + json.dumps(one)
    with embedded_system.session("referrals") as session:
        stored = session.execute(
            text("SELECT secret_encrypted FROM webhook_subscriptions")
        ).scalar()
    assert hook["secret"] not in stored and hook["secret"][6:20] not in stored

    rotated = school.post(f"/agencies/school-1/webhooks/{hook['id']}/rotate-secret")
    assert rotated.status_code == 201
    new_secret = rotated.get_json()["secret"]
    assert new_secret != hook["secret"] and rotated.get_json()["secret_rotated_at"]
    bearer(embedded_system, "lead_specialist").post("/referrals", json=REFERRAL)
    assert run(embedded_system, Clock()) == 1
    assert not receiver.received[0]["verified"]  # the old secret no longer matches
    receiver.secret = new_secret  # the receiver takes the new secret: it verifies again
    last = receiver.received[0]
    receiver.received.clear()
    delivery_id = last["delivery"]
    school.post(f"/agencies/school-1/webhook-deliveries/{delivery_id}/redeliver")
    assert run(embedded_system, Clock()) == 1
    assert receiver.received[0]["verified"]


def test_agency_scope_and_who_manages_webhooks(embedded_system: System, receiver: Receiver) -> None:
    admin, school, other = setup(embedded_system)
    hook = subscribe(embedded_system, school, receiver)
    bearer(embedded_system, "lead_specialist").post("/referrals", json=REFERRAL)
    with embedded_system.session("referrals") as session:
        delivery_id = session.scalars(select(WebhookDelivery.id)).one()
    base = f"/agencies/school-1/webhooks/{hook['id']}"
    assert other.get("/agencies/school-1/webhooks").status_code == 404
    assert other.get(base).status_code == 404
    assert other.patch(base, json={"active": False}).status_code == 404
    assert other.post(f"{base}/rotate-secret").status_code == 404
    assert other.delete(base).status_code == 404
    assert other.get(f"{base}/deliveries").status_code == 404
    assert other.get(f"/agencies/school-1/webhook-deliveries/{delivery_id}").status_code == 404
    assert (
        other.post(
            "/agencies/school-1/webhooks", json={"url": receiver.url, "events": EVENTS}
        ).status_code
        == 404
    )
    # its own webhooks: none, and school-1's id under its own agency is not found either
    assert other.get("/agencies/school-2/webhooks").get_json() == []
    assert other.get(f"/agencies/school-2/webhooks/{hook['id']}").status_code == 404
    assert other.get(f"/agencies/school-2/webhook-deliveries/{delivery_id}").status_code == 404
    staff = bearer(embedded_system, "agency_staff", agency="school-1")
    assert staff.get("/agencies/school-1/webhooks").status_code == 403
    coordinator = bearer(embedded_system, "coordinator")
    assert len(coordinator.get("/agencies/school-1/webhooks").get_json()) == 1
    bad = admin.post("/agencies/school-1/webhooks", json={"url": "ftp://x", "events": ["nope"]})
    assert bad.status_code == 422 and set(bad.get_json()["errors"]) == {"url", "events.0"}
    paused = admin.patch(base, json={"active": False})
    assert paused.status_code == 200 and paused.get_json()["active"] is False
    assert admin.delete(base).status_code == 204
    assert school.get(base).status_code == 404


def test_only_webhook_agencies_get_deliveries(embedded_system: System, receiver: Receiver) -> None:
    admin, school, _ = setup(embedded_system)
    subscribe(embedded_system, school, receiver)
    assert admin.patch("/agencies/school-1", json={"delivery": "api"}).status_code == 200
    lead = bearer(embedded_system, "lead_specialist")
    lead.post("/referrals", json=REFERRAL)
    lead.post("/referrals", json={**REFERRAL, "draft": True})
    with embedded_system.session("referrals") as session:
        assert session.scalars(select(WebhookDelivery)).all() == []
    assert admin.patch("/agencies/school-1", json={"delivery": "webhook"}).status_code == 200
    draft = lead.post("/referrals", json={**REFERRAL, "draft": True}).get_json()
    with embedded_system.session("referrals") as session:
        assert session.scalars(select(WebhookDelivery)).all() == []  # a draft went nowhere
    sent = lead.post(f"/referrals/{draft['id']}/transitions", json={"status": "requested"})
    assert sent.status_code == 200
    with embedded_system.session("referrals") as session:
        assert len(session.scalars(select(WebhookDelivery)).all()) == 1


# --- where webhooks may point --------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.5",
        "172.16.1.1",
        "192.168.1.10",
        "127.0.0.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared (CGNAT)
        "0.0.0.0",
        "224.0.0.251",  # multicast
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%lo",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    ],
)
def test_inside_addresses_are_not_public(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_global_unicast_addresses_are_public(address: str) -> None:
    assert is_public(address)


def resolving_to(*addresses: str) -> Any:
    """A resolver answering ``addresses`` for any name, as getaddrinfo would."""

    def resolve(host: str, port: int, **_: Any) -> list[Any]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolve


def test_destination_rules_refuse_inside_names_and_plain_http_in_production() -> None:
    production = Destinations.from_env({})
    assert production == Destinations(allow_private=False, https_only=True)
    with pytest.raises(RefusedDestination) as refused:
        production.check("http://8.8.8.8/hook")
    assert refused.value.errors and "https" in refused.value.errors["url"][0]
    target = production.check("https://8.8.8.8:8443/hook?x=1")
    assert (target.tls, target.port, target.path, target.addresses) == (
        True,
        8443,
        "/hook?x=1",
        ("8.8.8.8",),
    )
    # a name is judged by every address it resolves to
    mixed = Destinations(resolve=resolving_to("8.8.8.8", "10.0.0.7"))
    with pytest.raises(RefusedDestination) as inside:
        mixed.check("https://hooks.school.example/x")
    assert set(inside.value.errors or ()) == {"url"}
    allowed = Destinations.from_env({"REFERRALS_WEBHOOK_ALLOW_PRIVATE": "1"})
    assert allowed == Destinations(allow_private=True, https_only=False)
    assert allowed.check("http://127.0.0.1:9/x").addresses == ("127.0.0.1",)
    assert Destinations.from_env({}, embedded=True).https_only is False
    with pytest.raises(ConfigError):
        DeliveryPolicy.from_env({"REFERRALS_WEBHOOK_ALLOW_PRIVATE": "maybe"})


@pytest.mark.embedded
def test_subscriptions_to_inside_addresses_are_refused_naming_the_url(
    embedded_system: System,
) -> None:
    admin = bearer(embedded_system, "admin", strict=True)
    assert admin.post("/agencies", json=SCHOOL).status_code == 201
    for url in (
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://localhost/hook",  # a name that resolves inside
        "http://224.0.0.1/hook",
    ):
        refused = admin.post("/agencies/school-1/webhooks", json={"url": url, "events": EVENTS})
        assert refused.status_code == 422, url
        assert refused.mimetype == "application/problem+json"
        assert list(refused.get_json()["errors"]) == ["url"], url
    made = admin.post(
        "/agencies/school-1/webhooks", json={"url": "http://8.8.8.8/hook", "events": EVENTS}
    )
    assert made.status_code == 201  # public; plain http is taken in the embedded mode
    moved = admin.patch(
        f"/agencies/school-1/webhooks/{made.get_json()['id']}",
        json={"url": "http://192.168.0.10/hook"},
    )
    assert moved.status_code == 422 and "url" in moved.get_json()["errors"]
    with pytest.raises(ConfigError):
        embedded_system.app_with("referrals", REFERRALS_WEBHOOK_ALLOW_PRIVATE="maybe")


@pytest.mark.embedded
def test_a_name_that_now_resolves_inside_is_refused_at_send_time_and_not_retried(
    embedded_system: System, receiver: Receiver
) -> None:
    """DNS rebinding: the name was public when subscribed, points inside when the POST goes.
    The check at send time refuses it; with private destinations allowed, the POST goes to the
    very address checked (the name itself resolves nowhere)."""
    _, school, _ = setup(embedded_system)
    hook = subscribe(embedded_system, school, receiver)
    port = receiver.url.split(":")[2].split("/")[0]
    rebound = f"http://hooks.school.test:{port}/hooks/opora"
    with embedded_system.session("referrals") as session, session.begin():
        session.get(WebhookSubscription, hook["id"]).url = rebound  # as if it had been public
    bearer(embedded_system, "lead_specialist").post("/referrals", json=REFERRAL)

    strict = DeliveryPolicy(
        max_attempts=4,
        backoff_seconds=10,
        timeout_seconds=2,
        destinations=Destinations(https_only=False, resolve=resolving_to("127.0.0.1")),
    )
    clock = Clock()
    assert run(embedded_system, clock, strict) == 1
    assert receiver.received == []
    log = school.get(f"/agencies/school-1/webhooks/{hook['id']}/deliveries").get_json()
    entry = log["items"][0]
    assert entry["status"] == "failed" and entry["attempts"] == 1  # not retried
    assert entry["last_error"].startswith("refused:") and entry["last_status_code"] is None

    school.post(f"/agencies/school-1/webhook-deliveries/{entry['id']}/redeliver")
    inside = DeliveryPolicy(
        timeout_seconds=2,
        destinations=Destinations(
            allow_private=True, https_only=False, resolve=resolving_to("127.0.0.1")
        ),
    )
    assert run(embedded_system, clock, inside) == 1
    [got] = receiver.received
    assert got["verified"] and got["host"] == f"hooks.school.test:{port}"
