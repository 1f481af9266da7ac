"""The audit trail every service keeps: one ``GET /audit`` (same schema, filters and roles in
the four services), list answers written as one entry per family in one INSERT, and a trail
nobody can change, in SQLite as in PostgreSQL."""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import System
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from shared import db
from shared.auth import Principal, principal_context
from shared.auth.audit import record, record_families
from shared.config import SERVICES
from shared.logging import correlated

pytestmark = pytest.mark.embedded

READER = Principal("lead-1", frozenset({"lead_specialist"}), "centre-1")


def _tables(service: str) -> Any:
    return importlib.import_module(f"services.{service}.models").tables


def _write(system: System, service: str, *entries: dict[str, Any]) -> None:
    with system.session(service) as session, session.begin():
        for entry in entries:
            who = Principal(entry.pop("actor", "lead-1"), frozenset({"lead_specialist"}), None)
            with principal_context(who), correlated(entry.pop("correlation_id", "c-0")):
                record(session, _tables(service), **{"entity_id": None, **entry})


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_answers_get_audit_for_admins_and_auditors(
    embedded_system: System, service: str
) -> None:
    _write(
        embedded_system,
        service,
        {"action": "read", "entity": "family", "family_id": "fam-1", "correlation_id": "c-1"},
        {"action": "update", "entity": "case", "family_id": "fam-1", "actor": "lead-2"},
        {"action": "list", "entity": "family", "family_id": "fam-2"},
    )
    app = embedded_system.app(service)
    for role in ("admin", "auditor"):
        client = embedded_system.client(service, role)
        trail = client.get("/audit?family_id=fam-1")
        assert trail.status_code == 200, trail.get_json()
        body = trail.get_json()
        assert body["total"] == 2 and [e["action"] for e in body["items"]] == ["update", "read"]
        entry = body["items"][1]
        assert set(entry) == {
            "id",
            "at",
            "actor",
            "actor_agency",
            "actor_roles",
            "action",
            "entity",
            "entity_id",
            "family_id",
            "fields",
            "reason",
            "correlation_id",
        }
        assert entry["actor_roles"] == ["lead_specialist"] and entry["correlation_id"] == "c-1"
    admin = embedded_system.client(service, "admin")
    assert [e["family_id"] for e in admin.get("/audit?action=list").get_json()["items"]] == [
        "fam-2"
    ]
    assert admin.get("/audit?actor=lead-2").get_json()["total"] == 1
    assert admin.get("/audit?correlation_id=c-1").get_json()["total"] == 1
    assert admin.get("/audit?page_size=1&page=3").get_json()["items"][0]["action"] == "read"
    for role in ("coordinator", "lead_specialist", "agency_staff", "agency_system"):
        assert embedded_system.client(service, role).get("/audit").status_code == 403
    assert app.test_client().get("/audit").status_code == 401
    for method in ("post", "put", "patch", "delete"):
        assert getattr(admin, method)("/audit").status_code == 405


@pytest.mark.parametrize("service", SERVICES)
def test_get_audit_filters_by_time_and_refuses_bad_ranges(
    embedded_system: System, service: str
) -> None:
    _write(embedded_system, service, {"action": "read", "entity": "family", "family_id": "f"})
    admin = embedded_system.client(service, "admin")
    now = dt.datetime.now(dt.UTC)
    hour = dt.timedelta(hours=1)

    def count(**query: str) -> int:
        response = admin.get("/audit", query_string=query)
        assert response.status_code == 200, response.get_json()
        return int(response.get_json()["total"])

    assert count(**{"from": (now - hour).isoformat(), "to": (now + hour).isoformat()}) == 1
    assert count(**{"from": (now + hour).isoformat()}) == 0
    assert count(to=(now - hour).isoformat()) == 0
    for query, field in (
        ({"from": now.isoformat(), "to": (now - hour).isoformat()}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-01-01T10:00:00"}, "from"),  # no offset: which 10 o'clock?
        ({"to": "9999-12-31T23:59:59-05:00"}, "to"),  # past the year 9999 in UTC
        ({"from": "0001-01-01T00:00:00+05:00"}, "from"),
        ({"family_id": ""}, "family_id"),
        ({"action": "x" * 21}, "action"),
        ({"page_size": "201"}, "page_size"),
    ):
        response = admin.get("/audit", query_string=query)
        assert response.status_code == 422, (query, response.get_json())
        assert response.mimetype == "application/problem+json"
        assert field in str(response.get_json()), (query, response.get_json())


def test_the_four_services_document_one_audit_operation(embedded_system: System) -> None:
    """The same parameters and the same response schema in every service's OpenAPI document."""
    documents = []
    for service in SERVICES:
        spec = embedded_system.app(service).test_client().get("/openapi.json").get_json()
        operation = spec["paths"]["/audit"]["get"]
        schema = spec["components"]["schemas"]["AuditOutPage"]
        item = spec["components"]["schemas"]["AuditOut"]
        documents.append(
            (sorted(p["name"] for p in operation["parameters"]), schema, item, operation["tags"])
        )
        assert set(spec["paths"]["/audit"]) == {"get"}
    assert all(d == documents[0] for d in documents), documents
    names = documents[0][0]
    assert {"family_id", "actor", "action", "from", "to", "page", "page_size"} <= set(names)


def test_a_list_answer_writes_one_entry_per_family_in_one_insert(embedded_system: System) -> None:
    tables = _tables("registry")
    engine = embedded_system.worker("registry").engine
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "audit_log" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with (
            embedded_system.session("registry") as session,
            session.begin(),
            principal_context(READER),
        ):
            written = record_families(
                session,
                tables,
                action="list",
                entity="family",
                family_ids=["f-1", "f-2", None, "f-1", "f-3"],
                fields=["number"],
            )
            nobody = record_families(
                session, tables, action="search", entity="family", family_ids=[]
            )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert (written, nobody) == (3, 1)
    assert len(statements) == 2, statements  # one INSERT for the three families, one for none
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.audit_log.c.action, tables.audit_log.c.family_id).order_by(
                tables.audit_log.c.id
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("list", "f-1"),
        ("list", "f-2"),
        ("list", "f-3"),
        ("search", None),
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_the_trail_is_append_only_in_the_database(empty_database: str, service: str) -> None:
    """After the service's migrations, UPDATE and DELETE of an entry fail in SQLite (triggers
    of the migration 'audit trail append-only in SQLite') and in PostgreSQL (the first
    migration's trigger); INSERT still works."""
    db.upgrade(service, empty_database)
    engine = db.make_engine(empty_database)
    log = _tables(service).audit_log
    try:
        with engine.begin() as conn:
            conn.execute(
                log.insert(),
                {
                    "at": dt.datetime.now(dt.UTC),
                    "actor": "lead-1",
                    "actor_roles": ["lead_specialist"],
                    "action": "read",
                    "entity": "family",
                    "family_id": str(uuid.uuid4()),
                },
            )
        for change in (log.update().values(actor="someone-else"), log.delete()):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(change)
        with engine.connect() as conn:
            assert conn.execute(sa.select(log.c.actor)).scalars().all() == ["lead-1"]
    finally:
        engine.dispose()
