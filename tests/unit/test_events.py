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


# --- the compiled load of event data (shared/fast_load.py) agrees with marshmallow ------------

SAMPLE_DATE = "2026-01-02"
SAMPLE_TIME = "2026-01-02T03:04:05.123456+03:00"
# Values each field is also tried with: every JSON type, and the strings a field might parse.
ODD_VALUES = [
    None,
    "x",
    "",
    0,
    1,
    -1,
    1.5,
    2.0,
    True,
    False,
    [],
    ["x"],
    {},
    {"k": 1},
    SAMPLE_DATE,
    "20260102",
    "2026-01-02T03:04:05",
    "2026-01-02T03:04:05Z",
    SAMPLE_TIME,
    float("nan"),
    float("inf"),
    10**400,
]


def _sample(field: object) -> object:
    """A value a producer would send for ``field`` (what ``schema.dump`` writes)."""
    from marshmallow import fields, validate

    choices = [v.choices for v in field.validators if isinstance(v, validate.OneOf)]
    if choices:
        return next(iter(choices[0]))
    ranges = [v for v in field.validators if isinstance(v, validate.Range)]
    if isinstance(field, fields.Boolean):
        return True
    if isinstance(field, fields.Integer):
        low = ranges[0].min if ranges and ranges[0].min is not None else 1
        return low + (0 if not ranges or ranges[0].min_inclusive else 1)
    if isinstance(field, fields.Float):
        return (ranges[0].min if ranges and ranges[0].min is not None else 1) + 0.5
    if isinstance(field, fields.AwareDateTime):
        return SAMPLE_TIME
    if isinstance(field, fields.Date):
        return SAMPLE_DATE
    if isinstance(field, fields.String):
        lengths = [v for v in field.validators if isinstance(v, validate.Length)]
        return "ф" * max(1, lengths[0].min or 1 if lengths else 1)
    if isinstance(field, fields.List):
        return [_sample(field.inner), _sample(field.inner)]
    if isinstance(field, fields.Nested):
        return _sample_data(field.schema)
    if isinstance(field, fields.Dict):
        if field.key_field is None and field.value_field is None:
            return {"k": "v", "n": [1, {"x": None}]}
        key = _sample(field.key_field) if field.key_field else "k"
        return {key: _sample(field.value_field) if field.value_field else "v"}
    raise AssertionError(f"no sample for {type(field).__name__}: add one")


def _sample_data(schema: object, *, required_only: bool = False) -> dict:
    return {
        field.data_key or name: _sample(field)
        for name, field in schema.load_fields.items()
        if field.required or not required_only
    }


def _paths(value: object, path: tuple = ()) -> list[tuple]:
    """Every place in a sample where a value sits (dict keys and list items)."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list) and value:
        found += _paths(value[0], (*path, 0))
    return found


def _changed(data: dict, path: tuple, value: object) -> dict:
    import copy

    data = copy.deepcopy(data)
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    if value is _MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


def _variants(data: dict) -> list[dict]:
    variants = [data]
    for path in _paths(data):
        variants += [_changed(data, path, value) for value in [*ODD_VALUES, _MISSING]]
    for path in [(), *_paths(data)]:  # an unknown field wherever there is an object
        target = data
        for step in path:
            target = target[step]
        if isinstance(target, dict):
            variants.append(_changed(data, (*path, "not_a_field"), "x"))
    return variants


def _outcome(load, data: dict) -> tuple[str, str]:
    """What a load returns or raises, with every type visible (1 is not 1.0, a date not a string)."""
    import copy

    try:
        return "loaded", repr(load(copy.deepcopy(data)))
    except ValidationError as exc:
        return "refused", repr(exc.messages)


def _event_types() -> list:
    from shared.events import EVENTS

    load_all_event_types()
    return EVENTS.all()


@pytest.mark.parametrize("event_type", _event_types(), ids=lambda t: f"{t.name}.v{t.version}")
def test_compiled_load_of_event_data_agrees_with_marshmallow(event_type) -> None:  # type: ignore[no-untyped-def]
    """For every event, on what producers send and on every odd value in every place: the
    compiled load either gives exactly marshmallow's result or gives up (and marshmallow loads
    it), and the consumer's loader ends up with marshmallow's result or errors."""
    import copy

    from marshmallow import EXCLUDE

    from shared.events import data_loader
    from shared.fast_load import GiveUp, compile_load

    schema = event_type.schema(unknown=EXCLUDE)
    compiled = compile_load(schema)
    assert compiled is not None, f"{event_type.name} is not compiled: the consumer runs slower"
    full, minimal = _sample_data(schema), _sample_data(schema, required_only=True)
    for sample in (full, minimal):
        loaded = _outcome(schema.load, sample)
        assert loaded[0] == "loaded", (event_type.name, loaded)
        assert ("loaded", repr(compiled(copy.deepcopy(sample)))) == loaded  # the fast path
    for data in _variants(full):
        expected = _outcome(schema.load, data)
        try:
            fast = repr(compiled(copy.deepcopy(data)))
        except GiveUp:
            pass
        else:
            assert ("loaded", fast) == expected, data
        assert _outcome(data_loader(event_type.schema), data) == expected, data
