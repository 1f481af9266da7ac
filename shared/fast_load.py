"""Marshmallow's ``load`` of an event's data, compiled for the consumer's hot path.

The marshmallow schemas stay the one definition of every event (the AsyncAPI document and the
producers use them as they are). Loading one event through marshmallow's generic machinery
cost the consumer as much as everything else it does per event, so ``compile_load`` turns a
schema into plain functions for the inputs a producer sends: JSON values of exactly the
field's type. Anything else (a missing field, a wrong type, a failing validator, a field or
hook it does not know) makes the compiled function give up, and marshmallow loads the data
instead: it accepts what it accepts and words the errors. So the compiled path only has to
agree with marshmallow on what it accepts itself; ``tests/unit/test_events.py`` holds every
registered event schema to that.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields
from marshmallow.utils import missing

Convert = Callable[[Any], Any]

# What is compiled here is marshmallow 4's behaviour (dates read by ``fromisoformat``, field
# hooks); with an older marshmallow every schema is loaded by marshmallow itself.
_MARSHMALLOW_4 = int(version("marshmallow").split(".")[0]) >= 4


class GiveUp(Exception):
    """The compiled path does not take this input: load it with marshmallow."""


def compile_load(schema: Schema) -> Callable[[Any], dict[str, Any]] | None:
    """A function that loads like ``schema.load`` or raises GiveUp; None where the schema has
    what it does not handle (hooks, ``many``, ``partial``, unknown=INCLUDE)."""
    try:
        return _compile_schema(schema, schema.unknown)
    except _CannotCompile:
        return None


class _CannotCompile(Exception):
    pass


def _compile_schema(schema: Schema, unknown: str) -> Callable[[Any], dict[str, Any]]:
    hooks = getattr(schema, "_hooks", None)  # pre/post-load and validates hooks, by kind
    if (
        not _MARSHMALLOW_4
        or hooks is None
        or any(hooks.values())
        or schema.many
        or schema.partial
        or schema.dict_class is not dict
        or unknown not in (RAISE, EXCLUDE)
    ):
        raise _CannotCompile
    plans = []
    for name, field in schema.load_fields.items():
        key = field.data_key if field.data_key is not None else name
        target = field.attribute or name
        if "." in target:
            raise _CannotCompile  # marshmallow would nest it
        plans.append((key, target, _compile_field(field), field))
    known = frozenset(key for key, _, _, _ in plans)
    strict = unknown == RAISE

    def load(data: Any) -> dict[str, Any]:
        if type(data) is not dict or (strict and not known.issuperset(data)):
            raise GiveUp
        result: dict[str, Any] = {}
        for key, target, convert, field in plans:
            value = data.get(key, missing)
            if value is missing:
                if field.required:
                    raise GiveUp
                default = field.load_default
                if default is missing:
                    continue
                result[target] = default() if callable(default) else default
            else:
                result[target] = convert(value)
        return result

    return load


def _compile_field(field: fields.Field) -> Convert:
    """The field's deserialize for present values (None included)."""
    convert = None if field.pre_load or field.post_load else _converter(field)
    if convert is None:
        return _marshmallow_field(field)
    validators = tuple(field.validators)
    allow_none = field.allow_none

    def deserialize(value: Any) -> Any:
        if value is None:
            if allow_none:
                return None
            raise GiveUp
        result = convert(value)
        for validator in validators:
            try:
                if validator(result) is False:
                    raise GiveUp
            except ValidationError:
                raise GiveUp from None
        return result

    return deserialize


def _converter(field: Any) -> Convert | None:
    """The field's own conversion of a value that is not None; None: not compiled."""
    kind = type(field)
    if kind is fields.String:
        return _exact(str)
    if kind is fields.Integer:
        return _exact(int)
    if kind is fields.Boolean and field.truthy is fields.Boolean.truthy:
        return _exact(bool)
    if kind is fields.Float and not field.allow_nan:
        return _finite_float
    if kind is fields.Date and field.format in (None, "iso", "iso8601"):
        return _iso(dt.date.fromisoformat)
    if kind is fields.AwareDateTime and field.format in (None, "iso", "iso8601"):
        return _aware(field.default_timezone)
    if kind is fields.List:
        return _list(_compile_field(field.inner))
    if kind is fields.Dict:
        return _dict(field)
    if kind is fields.Nested and not field.many:
        try:
            return _exact(
                dict, _compile_schema(field.schema, field.unknown or field.schema.unknown)
            )
        except _CannotCompile:
            return None
    return None


def _exact(kind: type, then: Convert | None = None) -> Convert:
    """JSON gives each type as itself: take exactly it (``type() is``, so no bool for int)."""

    def convert(value: Any) -> Any:
        if type(value) is not kind:
            raise GiveUp
        return value if then is None else then(value)

    return convert


def _finite_float(value: Any) -> float:
    kind = type(value)
    if kind is not float and kind is not int:
        raise GiveUp
    try:
        result = float(value)
    except OverflowError:
        raise GiveUp from None
    if not math.isfinite(result):
        raise GiveUp
    return result


def _iso(parse: Callable[[str], Any]) -> Convert:
    def convert(value: Any) -> Any:
        if type(value) is not str:
            raise GiveUp
        try:
            return parse(value)
        except ValueError:
            raise GiveUp from None

    return convert


def _aware(default_timezone: dt.tzinfo | None) -> Convert:
    parse = _iso(dt.datetime.fromisoformat)

    def convert(value: Any) -> dt.datetime:
        result: dt.datetime = parse(value)
        if result.tzinfo is None or result.utcoffset() is None:
            if default_timezone is None:
                raise GiveUp
            return result.replace(tzinfo=default_timezone)
        return result

    return convert


def _list(inner: Convert) -> Convert:
    def convert(value: Any) -> list[Any]:
        if type(value) is not list:
            raise GiveUp
        return [inner(item) for item in value]

    return convert


def _dict(field: fields.Dict) -> Convert:
    keys = None if field.key_field is None else _compile_field(field.key_field)
    values = None if field.value_field is None else _compile_field(field.value_field)

    def convert(value: Any) -> dict[Any, Any]:
        if type(value) is not dict:
            raise GiveUp
        if keys is None and values is None:
            return dict(value)
        return {
            (k if keys is None else keys(k)): (v if values is None else values(v))
            for k, v in value.items()
        }

    return convert


def _marshmallow_field(field: fields.Field) -> Convert:
    """A field this module does not compile (a custom field, a hook): marshmallow's own."""

    def convert(value: Any) -> Any:
        try:
            return field.deserialize(value)
        except ValidationError:
            raise GiveUp from None

    return convert
