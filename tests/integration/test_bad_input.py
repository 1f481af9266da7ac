"""Bad input on PostgreSQL (issue 12.5): every JSON write and every list of every service, sent
what once answered 500 or stored what PostgreSQL cannot hold, answers 413, 415 or 422 naming
the field. The views are found in each app's URL map, so a new one is covered as it lands."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import System

from shared.auth.policy import ROLES_ATTR
from shared.auth.roles import COORDINATOR
from shared.config import SERVICES
from shared.http.bodies import JSON_LOCATIONS

pytestmark = pytest.mark.integration

BAD_BODIES: dict[str, tuple[bytes, str]] = {
    "NUL": (b'{"field": "a\\u0000b"}', "field"),
    "lone surrogate": (b'{"field": "\\ud800"}', "field"),
    "thousands of digits": (b'{"field": ' + b"9" * 5000 + b"}", "field"),
    "beyond 64 bits": (b'{"field": [1, 18446744073709551616]}', "field.1"),
    "nested 10,000 deep": (b'{"field": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", ""),
}


def routes(app: Any) -> Iterator[tuple[str, str, Any, dict[str, Any]]]:
    """(method, url with each path parameter 1, view, its flask-smorest docs)."""
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        url = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "1", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            target = getattr(getattr(view, "view_class", None), method.lower(), view)
            yield method, url, target, getattr(target, "_apidoc", None) or {}


def caller(system: System, app: Any, view: Any) -> Any:
    """A client whose token holds a role the view allows (a coordinator where it says none)."""
    roles = getattr(view, ROLES_ATTR, ()) or (COORDINATOR,)
    client = app.test_client()
    role = COORDINATOR if COORDINATOR in roles else roles[0]
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token(role, agency='a-1')}"
    return client


def takes(docs: dict[str, Any], location: set[str] | frozenset[str]) -> list[Any]:
    parameters = docs.get("arguments", {}).get("parameters", [])
    return [p["schema"] for p in parameters if p.get("in") in location]


def has_page(schema: Any) -> bool:
    fields = getattr(schema, "_declared_fields", None) or getattr(schema, "fields", {})
    return "page" in fields


def refused(answer: Any, status: int, what: str) -> dict[str, Any]:
    assert answer.status_code == status, f"{what}: {answer.status_code} {answer.get_data()[:300]!r}"
    assert answer.mimetype in {"application/problem+json", "application/fhir+json"}, what
    body: dict[str, Any] = answer.get_json()
    return body


def field_errors(body: dict[str, Any]) -> set[str]:
    if body.get("resourceType") == "OperationOutcome":
        return set(body["issue"][0].get("expression", []))
    return set(body.get("errors", {}))


@pytest.mark.parametrize("service", SERVICES)
def test_bad_input_is_refused_naming_the_field_on_postgresql(system: System, service: str) -> None:
    app = system.app(service)
    writes = lists = 0
    for method, url, view, docs in routes(app):
        client = caller(system, app, view)
        if method in {"POST", "PUT", "PATCH"} and takes(docs, JSON_LOCATIONS):
            writes += 1
            for what, (body, field) in BAD_BODIES.items():
                answer = client.open(url, method=method, data=body, content_type="application/json")
                errors = field_errors(refused(answer, 422, f"{method} {url}: {what}"))
                assert field in errors or (not field and errors), (method, url, what, errors)
            plain = client.open(url, method=method, data="field=x", content_type="text/plain")
            refused(plain, 415, f"{method} {url}: text/plain")
        if method == "GET" and any(has_page(s) for s in takes(docs, {"query"})):
            lists += 1
            for query, field in (("page=" + "9" * 30, "page"), ("page_size=0", "page_size")):
                answer = client.get(f"{url}?{query}")
                assert field_errors(refused(answer, 422, f"GET {url}?{query}")) == {field}
            nul = client.get(f"{url}?page=1&nothing=%00")
            assert "nothing" in field_errors(refused(nul, 422, f"GET {url} with a NUL"))
    assert writes and lists, f"{service}: {writes} JSON writes, {lists} lists"
