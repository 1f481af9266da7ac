"""The AMQP agency channel without a broker: reading foreign deliveries (sender, type, id, body),
per-agency inbox ids, stable outbound ids, names, and the AsyncAPI channel definitions."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from services.referrals import agency_channel
from services.referrals.agency_asyncapi import asyncapi_channels
from services.referrals.agency_ingress import MESSAGE_TYPES, inbox_id, to_event
from services.referrals.models import Referral
from shared.events import EventError
from shared.messaging.topology import Names

NOW = dt.datetime(2030, 1, 10, tzinfo=dt.UTC)
GOOD = {"user_id": "agency-school-1", "type": "referral.status", "message_id": "m-1"}
BODY = json.dumps({"referral_id": "r", "status": "received"}).encode()


def test_a_good_delivery_becomes_an_event_of_the_sending_agency() -> None:
    event = to_event(GOOD, BODY, NOW)
    assert event.type == "referral.status" and event.data["agency_id"] == "school-1"
    assert event.data["body"] == {"referral_id": "r", "status": "received"}
    assert event.id == inbox_id("school-1", "m-1") and len(event.id) == 36


@pytest.mark.parametrize(
    ("properties", "body", "reason"),
    [
        ({**GOOD, "user_id": None}, BODY, "no user_id"),
        ({**GOOD, "user_id": "guest"}, BODY, "not an agency system's user"),
        ({**GOOD, "user_id": "agency-"}, BODY, "not an agency system's user"),
        ({**GOOD, "type": "referral.delete"}, BODY, "is not one of"),
        ({**GOOD, "message_id": None}, BODY, "message_id is required"),
        (GOOD, b"\xff", "not UTF-8"),
        (GOOD, b"{oops", "not JSON"),
        (GOOD, b"[]", "not a JSON object"),
    ],
)
def test_bad_deliveries_are_refused_with_the_reason(
    properties: dict[str, str | None], body: bytes, reason: str
) -> None:
    with pytest.raises(EventError, match=reason):
        to_event(properties, body, NOW)


def test_inbox_ids_are_per_agency() -> None:
    assert inbox_id("a", "m-1") != inbox_id("b", "m-1")
    assert inbox_id("a", "m-1") == inbox_id("a", "m-1")


def test_outbound_ids_are_stable_per_change() -> None:
    referral = Referral(id="r-1", version=3)
    first = agency_channel.message_id("a", referral, "x", {"status": "received"})
    assert first == agency_channel.message_id("a", referral, "x", {"status": "received"})
    referral.version = 4
    assert first != agency_channel.message_id("a", referral, "x", {"status": "received"})


def test_names_and_users() -> None:
    names = Names("opora")
    assert agency_channel.inbox_name(names, "school-1") == "opora.agency.school-1.inbox"
    assert names.dlq(agency_channel.inbox_key("school-1")) == "opora.agency.school-1.inbox.dlq"
    assert agency_channel.agency_of_user(agency_channel.user_name("x-1")) == "x-1"
    queue = agency_channel.inbox_queue(names, "school-1")
    assert queue.queue_arguments["x-queue-type"] == "quorum"
    assert queue.queue_arguments["x-dead-letter-exchange"] == "opora.dlx"
    assert queue.routing_key == "school-1" and queue.exchange.type == "direct"


def test_the_asyncapi_channels_document_every_message() -> None:
    plugin = MarshmallowPlugin(schema_name_resolver=lambda _schema: "")
    APISpec("t", "1", "3.0.3", plugins=[plugin])
    converter = plugin.converter
    assert converter is not None
    channels = asyncapi_channels(Names("opora"), lambda s: dict(converter.schema2jsonschema(s)))
    ingress = channels["opora.agency.ingress"]["publish"]["message"]["oneOf"]
    assert [m["name"] for m in ingress] == list(MESSAGE_TYPES)
    status = ingress[0]["payload"]
    assert {"referral_id", "status"} <= set(status["required"])
    inbox = channels["opora.agency.{agency_id}.inbox"]["subscribe"]["message"]["payload"]
    assert "status" in inbox["properties"]["referral"]["properties"]
