"""The envelope and the event registry, without any broker."""

from __future__ import annotations

import json

import pytest
from marshmallow import ValidationError

from shared.events import (
    MalformedEvent,
    UnknownEvent,
    build_envelope,
    load_all_event_types,
    parse_envelope,
)

REGISTERED = {
    "family_id": "f-1",
    "number": "F-0001",
    "category": "sop",
    "address": {"region": "R", "district": "D", "settlement": "S"},
    "display_name": "Иванова",
    "children_count": 2,
    "family_version": 1,
}


@pytest.fixture(autouse=True)
def _events() -> None:
    load_all_event_types()


def envelope(**changes: object) -> dict:
    env = build_envelope(
        "registry.family.registered", REGISTERED, producer="registry", correlation_id="c1"
    )
    env.update(changes)
    return env


def test_envelope_round_trip_keeps_ids_and_data() -> None:
    env = envelope()
    event = parse_envelope(json.dumps(env).encode())
    assert event.id == env["id"] and event.version == 1 and event.correlation_id == "c1"
    assert event.data["address"]["district"] == "D"
    assert event.occurred_at.tzinfo is not None


def test_publishing_invalid_data_is_refused() -> None:
    with pytest.raises(ValidationError):
        build_envelope(
            "registry.family.registered",
            {**REGISTERED, "category": "unknown"},
            producer="registry",
            correlation_id="c",
        )


def test_a_service_cannot_publish_another_services_event() -> None:
    with pytest.raises(ValueError):
        build_envelope(
            "registry.family.registered", REGISTERED, producer="raids", correlation_id="c"
        )


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        (b"\xff\xfe", MalformedEvent, "UTF-8"),
        (b"[1, 2]", MalformedEvent, "JSON object"),
        (b"{not json", MalformedEvent, "not JSON"),
        (
            json.dumps({"type": "registry.family.registered"}).encode(),
            MalformedEvent,
            "bad envelope",
        ),
    ],
)
def test_malformed_bodies_are_named(body: bytes, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        parse_envelope(body)


def test_unknown_version_and_type_are_named() -> None:
    with pytest.raises(UnknownEvent, match="unknown version 7"):
        parse_envelope(json.dumps(envelope(version=7)))
    with pytest.raises(UnknownEvent, match="unknown event type"):
        parse_envelope(json.dumps(envelope(type="registry.nothing.happened")))


def test_bad_data_reason_names_the_field_not_the_value() -> None:
    env = envelope()
    env["data"]["display_name"] = None
    with pytest.raises(MalformedEvent) as info:
        parse_envelope(json.dumps(env))
    assert "display_name" in str(info.value)
    env["data"] = {**REGISTERED, "children_count": "Иванова"}
    with pytest.raises(MalformedEvent) as info:
        parse_envelope(json.dumps(env))
    assert "Иванова" not in str(info.value)


_MISSING = object()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "not-a-uuid"),
        ("id", 12),
        ("type", "Registry.family"),
        ("type", None),
        ("version", 0),
        ("version", "1"),
        ("version", True),
        ("version", 1.0),
        ("occurred_at", "2026-11-23T10:00:00"),
        ("occurred_at", "yesterday"),
        ("occurred_at", 5),
        ("producer", ""),
        ("producer", "p" * 61),
        ("correlation_id", 7),
        ("correlation_id", "c" * 65),
        ("causation_id", "x" * 65),
        ("causation_id", 3),
        ("data", [1]),
        ("data", _MISSING),
        ("producer", _MISSING),
        ("extra", "field"),
        ("causation_id", None),
        ("causation_id", _MISSING),
        ("occurred_at", "2026-11-23T10:00:00Z"),
        ("occurred_at", "2026-11-23T10:00:00.123456+03:00"),
    ],
)
def test_fast_envelope_check_agrees_with_the_envelope_schema(field: str, value: object) -> None:
    """The consumer checks envelopes by hand for speed; it must accept and refuse exactly what
    the documented ``EnvelopeSchema`` does."""
    from shared.events import EnvelopeSchema

    env = envelope()
    if value is _MISSING:
        env.pop(field, None)
    else:
        env[field] = value
    try:
        EnvelopeSchema().load(env)
        schema_accepts = True
    except ValidationError:
        schema_accepts = False
    try:
        parse_envelope(json.dumps(env))
        fast_accepts = True
    except MalformedEvent as exc:
        assert "bad envelope" in str(exc)
        fast_accepts = False
    assert fast_accepts == schema_accepts, (field, value)
