"""Property-based API testing (issue 12.5): schemathesis reads each service's own OpenAPI
document and sends what it derives from it: the documented examples, the boundary and
negative values of every parameter and body (coverage), generated valid requests (fuzzing)
and chains of calls that feed one answer's ids into the next (stateful), as a coordinator and
as an agency system with its API key.

Every answer must be free of server errors, match its documented schema, status code and
content type. The apps run on SQLite with the demo district (its events delivered, so paths
meet real ids); the run is bounded (few examples per operation, a fixed seed, no shrinking,
no cache between runs), and its figures are printed at the end of the session.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from conftest import System, summaries

from shared.auth.policy import ROLES_ATTR
from shared.auth.roles import AGENCY_SYSTEM
from shared.config import SERVICES

pytestmark = pytest.mark.embedded

SEED = 125
MAX_EXAMPLES = 6
STATEFUL_STEPS = 8
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "content_type_conformance",
    "status_code_conformance",
)
SECTION = "schemathesis: operations, requests per phase, failures"


@dataclass
class Run:
    operations: set[str] = field(default_factory=set)
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def line(self, service: str, caller: str, refused: int) -> str:
        phases = ", ".join(f"{phase} {count}" for phase, count in self.requests.items())
        answered = sum(self.statuses.values())
        ok = sum(count for status, count in self.statuses.items() if status < 300)
        return (
            f"{service:<13} {caller:<11} {len(self.operations):>3} operations"
            + (f" (+{refused} refused at the role check)" if refused else "")
            + ", "
            f"{answered:>5} requests ({phases}; {ok} answered 2xx), "
            f"{len(self.failures)} failures, {self.seconds:.0f} s "
            + str({k: round(v) for k, v in self.phase_seconds.items()})
        )


def config(headers: dict[str, str]) -> Any:
    from schemathesis.config import SchemathesisConfig

    checks: dict[str, Any] = {"enabled": False}
    checks.update({name: {"enabled": True} for name in CHECKS})
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": headers,
            "cache": {"enabled": False},
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "no-shrink": True,
                "database": "none",
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {
                    "enabled": True,
                    "unexpected-methods": [],
                    "generate-duplicate-query-parameters": False,
                },
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": STATEFUL_STEPS},
            },
            "checks": checks,
        }
    )


def run(app: Any, headers: dict[str, str], skip: set[str]) -> Run:
    from schemathesis.engine import events, from_schema

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=config(headers))
    if skip:
        schema = schema.exclude(name=sorted(skip))
    result = Run()
    started = phase_started = time.perf_counter()
    for event in from_schema(schema).execute():
        if isinstance(event, events.PhaseStarted):
            phase_started = time.perf_counter()
        elif isinstance(event, events.PhaseFinished):
            result.phase_seconds[event.phase.name.lower()] = time.perf_counter() - phase_started
        elif isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            if event.phase.name != "STATEFUL_TESTING":
                result.operations.add(recorder.label)
            result.requests[event.phase.name.lower()] += len(recorder.interactions)
            for interaction in recorder.interactions.values():
                if interaction.response is not None:
                    result.statuses[interaction.response.status_code] += 1
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.status.name == "FAILURE":
                        result.failures.append(describe(event.phase.name, recorder, case_id, check))
        elif isinstance(event, events.NonFatalError):
            result.failures.append(f"{event.phase}: {event.label}: error {event.value!r}")
        elif isinstance(event, events.FatalError):
            result.failures.append(f"fatal: {event.exception!r}")
    result.seconds = time.perf_counter() - started
    return result


def describe(phase: str, recorder: Any, case_id: str, check: Any) -> str:
    interaction = recorder.interactions.get(case_id)
    request = ""
    if interaction is not None:
        request = f" ({interaction.request.method} {interaction.request.uri}"
        if interaction.response is not None:
            request += f" -> {interaction.response.status_code}"
        request += ")"
    info = check.failure_info
    title = info.failure.title if info is not None else ""
    return f"{phase.lower()}: {recorder.label}: {check.name}: {title}{request}"


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The embedded system with the demo district, its events delivered to every service."""
    from kombu.transport.filesystem import Transport

    from shared import db as database
    from shared import demo

    folder = tmp_path_factory.mktemp("schemathesis")
    Transport.global_state.clear()
    urls = {s: f"sqlite:///{folder / (s + '.db')}" for s in SERVICES}
    for service, url in urls.items():
        database.upgrade(service, url)
    system = System(urls, "filesystem://", "opora", str(folder))
    system.declare()
    demo.seed(system.env())
    for _ in range(2):  # the directory's events, then what they caused
        for service in SERVICES:
            system.relay(service)
        for service in SERVICES:
            system.consume(service, idle=0.2)
    yield system
    system.close()


def caller_headers(system: System, service: str, caller: str) -> dict[str, str]:
    if caller == "coordinator":
        token = system.token("coordinator", subject="demo-coordinator")
        return {"Authorization": f"Bearer {token}"}
    from shared import demo
    from shared.auth.apikeys import create_api_key

    tables = system.app(service).extensions["opora"].tables
    with system.session(service) as session, session.begin():
        key = create_api_key(session, tables, agency_id=demo.SCHOOL, name="school system")
    return {"X-Api-Key": key}


def roles_by_operation(app: Any) -> dict[str, tuple[str, ...]]:
    """``"POST /cases/{case_id}/contacts"`` -> the roles its view requires (none: open)."""
    out: dict[str, tuple[str, ...]] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            target = getattr(getattr(view, "view_class", None), method.lower(), view)
            out[f"{method} {path}"] = tuple(getattr(target, ROLES_ATTR, ()))
    return out


@pytest.mark.parametrize("caller", ["coordinator", "agency-key"])
@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_answers_as_documented(district: System, service: str, caller: str) -> None:
    """An agency system's key is refused every operation not open to agency systems at the role
    check, whatever the request carries; schemathesis then tests the ones it may use."""
    app = district.app(service)
    documented = app.test_client().get("/openapi.json").get_json()
    operations = {
        f"{method.upper()} {path}"
        for path, item in documented["paths"].items()
        for method in item
        if method in {"get", "put", "post", "patch", "delete"}
    }
    headers = caller_headers(district, service, caller)
    skip: set[str] = set()
    if caller == "agency-key":
        roles = roles_by_operation(app)
        skip = {name for name in operations if roles[name] and AGENCY_SYSTEM not in roles[name]}
        client = app.test_client()
        for name in sorted(skip):
            method, path = name.split(" ", 1)
            url = re.sub(r"\{[^}]+\}", "1", path)
            answer = client.open(
                url, method=method, headers=headers, data="[[", content_type="application/json"
            )
            assert answer.status_code == 403, f"{name}: {answer.status_code}"
    result = run(app, headers, skip)
    summaries.setdefault(SECTION, []).append(result.line(service, caller, len(skip)))
    assert result.operations == operations - skip, "every documented operation was exercised"
    if caller == "coordinator":
        assert sum(c for s, c in result.statuses.items() if s < 300) > 0, "requests succeeded"
    assert not result.failures, "\n".join(sorted(set(result.failures)))
