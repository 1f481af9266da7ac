"""What a request may carry, checked once for every view before any view code runs.

A JSON body is parsed by :func:`load_json` alone, with limits on nesting and on numbers; every
string in it (keys too), in the query and in the path is refused when it holds a NUL or an
unpaired surrogate, which PostgreSQL and the UTF-8 encoder cannot store. A view that reads a
JSON body refuses any other content type with 415, so a form or a text body is not taken for an
empty JSON object. The size limit is Flask's ``MAX_CONTENT_LENGTH`` (413).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flask import request

from shared.errors import DomainError

MAX_DEPTH = 32
# Integers must fit a signed 64-bit column; longer digit strings are not even converted.
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
MAX_NUMBER_CHARS = 40
JSON_LOCATIONS = frozenset({"json", "json_or_form"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class InvalidRequest(DomainError):
    """Input no view could store: 422 naming each field path."""

    status = 422
    title = "Invalid request"
    code = "validation-error"


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported media type"
    code = "unsupported-media-type"


class _BadNumber:
    """Stands in, while parsing, for a number that is refused once its path is known."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _parse_int(text: str) -> int | _BadNumber:
    if len(text) > MAX_NUMBER_CHARS:
        return _BadNumber("number too large")
    value = int(text)
    return value if MIN_INT <= value <= MAX_INT else _BadNumber("number too large")


def _parse_float(text: str) -> float | _BadNumber:
    value = float(text) if len(text) <= MAX_NUMBER_CHARS else math.inf
    return value if math.isfinite(value) else _BadNumber("number too large")


def _parse_constant(_text: str) -> _BadNumber:
    return _BadNumber("NaN and Infinity are not JSON numbers")


_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


def load_json(raw: bytes | str) -> Any:
    """The one JSON parser of request bodies.

    Raises :class:`ValueError` for text that is not JSON, :class:`InvalidRequest` for JSON
    nested deeper than ``MAX_DEPTH``, numbers beyond a 64-bit integer or a finite double, and
    strings with a NUL or an unpaired surrogate, naming the path of each.
    """
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise InvalidRequest(
            f"the JSON body is nested deeper than {MAX_DEPTH} levels",
            errors={"_body": [f"nested deeper than {MAX_DEPTH} levels"]},
        ) from None
    errors = _check_tree(value)
    if errors:
        raise InvalidRequest("the request has invalid fields; see errors", errors=errors)
    return value


def _check_tree(root: Any) -> dict[str, list[str]]:
    """Walk the parsed body without recursion; field path -> messages."""
    errors: dict[str, list[str]] = {}
    stack: list[tuple[Any, str, int]] = [(root, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            errors.setdefault(path or "_body", []).append(f"nested deeper than {MAX_DEPTH}")
            continue
        if isinstance(value, dict):
            for key, inner in value.items():
                inner_path = f"{path}.{key}" if path else key
                if _UNSTORABLE.search(key):
                    errors.setdefault(_printable(path) or "_body", []).append(
                        "a key holds a NUL character or an unpaired surrogate"
                    )
                    continue
                stack.append((inner, inner_path, depth + 1))
        elif isinstance(value, list):
            stack.extend(
                (inner, f"{path}.{i}" if path else str(i), depth + 1)
                for i, inner in enumerate(value)
            )
        elif isinstance(value, str):
            if _UNSTORABLE.search(value):
                errors.setdefault(path or "_body", []).append(
                    "holds a NUL character or an unpaired surrogate"
                )
        elif isinstance(value, _BadNumber):
            errors.setdefault(path or "_body", []).append(value.reason)
    return errors


def _printable(path: str) -> str:
    return _UNSTORABLE.sub("?", path)


def is_json_type(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def check_request(view: Callable[..., Any] | None) -> None:
    """The ``before_request`` check of path, query and body (after authentication and the
    role check, so a caller who may not act learns nothing about the input it would need)."""
    errors: dict[str, list[str]] = {}
    for name, value in _parameters():
        if _UNSTORABLE.search(name) or _UNSTORABLE.search(value):
            errors.setdefault(_printable(name), []).append(
                "holds a NUL character or an unpaired surrogate"
            )
    if errors:
        raise InvalidRequest("the request has invalid parameters; see errors", errors=errors)
    if request.method not in BODY_METHODS:
        return
    if is_json_type(request.mimetype):
        raw = request.get_data(cache=True)
        if not raw:
            return
        try:
            parsed = load_json(raw)
        except ValueError:
            # Left to the view's parser, which answers 400 in the problem format.
            return
        # Flask's get_json then answers from this parse instead of parsing again.
        request._cached_json = (parsed, parsed)
        return
    if view is not None and _reads_json(view) and request.get_data(cache=True):
        raise UnsupportedMediaType(
            "send the body as application/json",
            errors={"Content-Type": ["must be application/json"]},
        )


def _parameters() -> Iterator[tuple[str, str]]:
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str):
            yield name, value
    yield from request.args.items(multi=True)


def _reads_json(view: Callable[..., Any]) -> bool:
    """Whether the view (or, for a class view, the method called) declares a JSON body."""
    target: Any = view
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        target = getattr(view_class, request.method.lower(), None)
    docs: Mapping[str, Any] = getattr(target, "_apidoc", None) or {}
    parameters = docs.get("arguments", {}).get("parameters", [])
    return any(parameter.get("in") in JSON_LOCATIONS for parameter in parameters)
