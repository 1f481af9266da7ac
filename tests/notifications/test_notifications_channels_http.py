"""HttpGatewayProvider against the HTTP SMS gateway of peers.py, and receipt callbacks."""

from __future__ import annotations

import datetime as dt

import pytest

from services.notifications.channels import (
    HttpGatewayProvider,
    NotFinal,
    PermanentFailure,
    Sms,
    TemporaryFailure,
    parse_http_receipt,
)
from services.notifications.channels.http_gateway import retry_after_seconds

from .peers import HttpGatewayPeer, free_port, wait_until

PHONE = "+79211234567"


def test_send_body_headers_and_one_kept_alive_connection(sms_gateway):
    p = HttpGatewayProvider(sms_gateway.url, name="gw", token="t0ken")
    sents = [p.send(Sms(f"m-{i}", "8 921 123 45 67", f"текст {i}")) for i in range(5)]
    p.close()

    assert [s.provider_message_ids for s in sents] == [(f"gw-{i}",) for i in range(1, 6)]
    assert {s.provider for s in sents} == {"gw"}
    first = sms_gateway.sends()[0]
    assert first.body == {"to": PHONE, "text": "текст 0", "message_id": "m-0"}
    assert first.headers["Authorization"] == "Bearer t0ken"
    assert first.headers["Idempotency-Key"] == "m-0"
    assert first.headers["Content-Type"] == "application/json"
    assert sms_gateway.send_connections == 1


def test_receipt_callback_is_posted_and_parsed(sms_gateway):
    p = HttpGatewayProvider(sms_gateway.url, name="gw", callback_url=sms_gateway.callback_url)
    sent = p.send(Sms("m-1", PHONE, "hello"))
    assert sms_gateway.sends()[0].body["callback_url"] == sms_gateway.callback_url
    assert wait_until(lambda: len(sms_gateway.callbacks) == 1)
    receipt = parse_http_receipt("gw", sms_gateway.callbacks[0])
    assert (receipt.provider, receipt.provider_message_id, receipt.state, receipt.error) == (
        "gw",
        sent.provider_message_ids[0],
        "delivered",
        None,
    )
    assert receipt.at.tzinfo is not None
    assert p.receipts() == []  # callbacks go to N3's endpoint, not through the provider
    p.close()


def test_failed_receipt_callback_is_bounced():
    with HttpGatewayPeer(receipt_status="undeliverable") as gateway:
        p = HttpGatewayProvider(gateway.url, callback_url=gateway.callback_url)
        p.send(Sms("m-1", PHONE, "hello"))
        assert wait_until(lambda: len(gateway.callbacks) == 1)
        receipt = parse_http_receipt("http", gateway.callbacks[0])
        assert (receipt.state, receipt.error) == ("bounced", "absent subscriber")
        p.close()


@pytest.mark.parametrize("status", [500, 502, 503, 408])
def test_server_errors_are_temporary(sms_gateway, status):
    p = HttpGatewayProvider(sms_gateway.url)
    sms_gateway.fail_next(1, status)
    with pytest.raises(TemporaryFailure) as failure:
        p.send(Sms("m-1", PHONE, "hello"))
    assert str(status) in failure.value.reason and failure.value.retry_after is None
    p.send(Sms("m-1", PHONE, "hello"))  # the connection stays usable
    assert sms_gateway.send_connections == 1
    p.close()


def test_429_is_temporary_with_retry_after_seconds(sms_gateway):
    p = HttpGatewayProvider(sms_gateway.url)
    sms_gateway.fail_next(1, 429, retry_after="7")
    with pytest.raises(TemporaryFailure) as failure:
        p.send(Sms("m-1", PHONE, "hello"))
    assert failure.value.retry_after == 7.0
    p.close()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_are_permanent(sms_gateway, status):
    p = HttpGatewayProvider(sms_gateway.url)
    sms_gateway.fail_next(1, status)
    with pytest.raises(PermanentFailure) as failure:
        p.send(Sms("m-1", PHONE, "hello"))
    assert failure.value.reason == f"SMS gateway refused the message ({status})"
    p.close()


def test_timeout_is_temporary(sms_gateway):
    p = HttpGatewayProvider(sms_gateway.url, timeout=0.3)
    sms_gateway.slow(1.0)
    with pytest.raises(TemporaryFailure) as failure:
        p.send(Sms("m-1", PHONE, "hello"))
    assert failure.value.reason == "SMS gateway timed out"
    p.close()


def test_gateway_down_is_temporary():
    p = HttpGatewayProvider(f"http://127.0.0.1:{free_port()}/send", timeout=1)
    with pytest.raises(TemporaryFailure) as failure:
        p.send(Sms("m-1", PHONE, "hello"))
    assert failure.value.reason.startswith("SMS gateway unreachable")


def test_answer_without_id_is_temporary(sms_gateway):
    p = HttpGatewayProvider(sms_gateway.url.replace("/send", "/receipts"))  # answers {"ok": true}
    with pytest.raises(TemporaryFailure) as failure:
        p.send(Sms("m-1", PHONE, "hello"))
    assert failure.value.reason == "SMS gateway answered without a message id"


def test_retry_after_forms():
    now = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("12", now=lambda: now) == 12.0
    assert retry_after_seconds("Wed, 01 Jan 2025 12:00:30 GMT", now=lambda: now) == 30.0
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now=lambda: now) == 0.0
    assert retry_after_seconds("soon", now=lambda: now) is None
    assert retry_after_seconds(None) is None


def test_receipt_parsing_rules():
    at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    r = parse_http_receipt("gw", {"id": 17, "status": "DELIVRD", "at": "2025-01-01T00:00:00Z"})
    assert (r.provider_message_id, r.state, r.at) == ("17", "delivered", at)
    r = parse_http_receipt(
        "gw", {"id": "x", "status": "failed", "error": "no route to +7 921 123-45-67"}
    )
    assert r.state == "failed" and r.error == "no route to <number>"
    r = parse_http_receipt("gw", {"id": "x", "state": "rejected"}, now=lambda: at)
    assert (r.state, r.error, r.at) == ("bounced", "rejected", at)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"status": "delivered"}, "'id'"),
        ({"id": "x"}, "'status'"),
        ({"id": "x", "status": "teleported"}, "unknown value"),
        ({"id": "x", "status": "delivered", "at": "yesterday"}, "'at'"),
        ([], "JSON object"),
    ],
)
def test_unusable_receipts_name_the_field(payload, field):
    with pytest.raises(ValueError) as error:
        parse_http_receipt("gw", payload)
    assert field in str(error.value)


def test_intermediate_status_is_not_final():
    with pytest.raises(NotFinal):
        parse_http_receipt("gw", {"id": "x", "status": "enroute"})
