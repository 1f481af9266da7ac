"""One error format for every service: ``application/problem+json`` (RFC 9457).

A problem says what went wrong and which fields; it never carries a stack trace, an
exception message of a server error, or the values the client sent.
"""

from __future__ import annotations

import http
import logging
import re
import traceback
from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from flask import current_app, has_request_context, request
from flask.wrappers import Response
from werkzeug.exceptions import HTTPException

from shared.errors import DomainError
from shared.logging import correlation_id

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://opora.dev/problems/"
WEBARGS_LOCATIONS = frozenset(
    {"json", "query", "querystring", "form", "json_or_form", "headers", "cookies", "files"}
    | {"view_args", "path"}
)

log = logging.getLogger("opora.http")


class ProblemSchema(ma.Schema):
    """The error body, for the OpenAPI document (responses are built by :func:`problem`)."""

    type = ma.fields.String(metadata={"description": "URI naming the kind of problem"})
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    instance = ma.fields.String(metadata={"description": "path of the request"})
    correlation_id = ma.fields.String()
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": "field path -> messages, for invalid requests"},
    )


def problem(
    status: int,
    *,
    code: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    errors: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    phrase = _phrase(status)
    body: dict[str, Any] = {
        "type": TYPE_BASE + (code or slug(phrase)),
        "title": title or phrase,
        "status": status,
    }
    if detail and has_request_context():
        detail = without_path_values(detail)
    if detail:
        body["detail"] = detail
    if has_request_context():
        body["instance"] = request.path
    corr = correlation_id.get()
    if corr:
        body["correlation_id"] = corr
    if errors:
        body["errors"] = dict(errors)
    response = current_app.response_class(
        current_app.json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if status == 401:
        response.headers.setdefault("WWW-Authenticate", "Bearer")
    return response


def without_path_values(detail: str) -> str:
    """``detail`` with each value the caller put in the path replaced by its parameter's name
    (``no case {case_id}``): an answer does not repeat what it was sent, which may be anything
    from a typo to a name."""
    for name, value in (request.view_args or {}).items():
        text = str(value)
        if text:
            detail = re.sub(rf"(?<!\w){re.escape(text)}(?!\w)", f"{{{name}}}", detail)
    return detail


def from_domain_error(exc: DomainError) -> Response:
    return problem(exc.status, code=exc.code, title=exc.title, detail=exc.detail, errors=exc.errors)


def from_http_exception(exc: HTTPException) -> Response:
    """Werkzeug and webargs errors (404, 405, 400 bad JSON, 422 invalid fields...)."""
    status = exc.code or 500
    if status >= 500:
        original = getattr(exc, "original_exception", None)
        if original is not None:
            log_unhandled(original)
        return internal_error()
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    data = getattr(exc, "data", None) or {}
    headers.update(data.get("headers") or {})
    messages = data.get("errors", data.get("messages"))
    if messages:
        return problem(
            status,
            code="validation-error" if status == 422 else None,
            title="Invalid request" if status == 422 else None,
            detail=data.get("message") or "The request has invalid fields; see errors.",
            errors=flatten_messages(messages),
            headers=headers,
        )
    return problem(status, detail=data.get("message") or exc.description, headers=headers)


def internal_error() -> Response:
    return problem(500, code="internal-error", title="Internal error")


def log_unhandled(exc: BaseException) -> None:
    """Type and code location only: exception messages may quote personal data."""
    frames = traceback.extract_tb(exc.__traceback__)[-10:]
    stack = " < ".join(
        f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
        for frame in reversed(frames)
    )
    log.error(
        "unhandled %s (correlation id %s)",
        type(exc).__name__,
        correlation_id.get(),
        extra={"error_type": type(exc).__name__, "stack": stack},
    )


def flatten_messages(messages: Any) -> dict[str, list[str]]:
    """webargs messages keyed by location, as dotted field paths.

    ``{"json": {"members": {"0": {"birth_date": ["Not a valid date."]}}}}`` becomes
    ``{"members.0.birth_date": ["Not a valid date."]}``; a message about a whole location
    (e.g. a body that is not JSON) keeps the location's name.
    """
    out: dict[str, list[str]] = {}
    if isinstance(messages, Mapping) and messages and set(messages) <= WEBARGS_LOCATIONS:
        for location, inner in messages.items():
            if isinstance(inner, Mapping):
                _walk(inner, "", out)
            else:
                _walk(inner, str(location), out)
    else:
        _walk(messages, "", out)
    return out


def _walk(value: Any, path: str, out: dict[str, list[str]]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _walk(inner, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, Mapping | list | tuple):
                _walk(item, path, out)
            else:
                out.setdefault(path or "_schema", []).append(str(item))
    else:
        out.setdefault(path or "_schema", []).append(str(value))


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def slug(phrase: str) -> str:
    """A problem type's code from its title: ``Not Found`` -> ``not-found``."""
    return "-".join(phrase.lower().replace("'", "").split())
