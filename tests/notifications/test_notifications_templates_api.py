"""The templates API on SQLite: admins only for writes, 422 naming the part, versions and
rollback, previews with SMS segments, the audit trail, idempotent writes; the migration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, select

from services.notifications.api_templates import templates
from services.notifications.channels.sms import segments
from services.notifications.models import tables
from services.notifications.models_templates import TemplateVersion
from shared.auth.tokens import issue_dev_token
from shared.config import load_settings
from shared.db import make_engine
from shared.http import create_service_app

pytestmark = pytest.mark.embedded

BASE = "/templates/referral.overdue/sms/ru"
GOOD_SMS = "Просрочено: {{ referral_number }}, {{ days_overdue }} дн. {{ referral_url }}"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'notifications.db'}")
    # Only the tables this API uses, so the test does not depend on the rest of the service.
    infrastructure = [tables.api_keys, tables.audit_log, tables.idempotency_keys]
    own = TemplateVersion.metadata.tables["template_versions"]
    TemplateVersion.metadata.create_all(engine, tables=[*infrastructure, own])
    yield engine
    engine.dispose()


@pytest.fixture
def app(tmp_path: Path, engine: Engine) -> Flask:
    settings = load_settings(
        "notifications",
        env={
            "OPORA_MODE": "embedded",
            "OPORA_DATA_DIR": str(tmp_path),
            "OPORA_JWT_SECRET": "test-secret-for-hs256-signing-templates",
        },
    )
    return create_service_app(
        "notifications", settings, tables=tables, blueprints=[templates], engine=engine
    )


def client(app: Flask, role: str = "admin", subject: str = "admin-1") -> Any:
    settings = app.extensions["opora"].settings
    token = issue_dev_token(settings, subject=subject, roles=[role])
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return test_client


def audit_rows(app: Flask) -> list[dict[str, Any]]:
    state = app.extensions["opora"]
    with state.engine.connect() as conn:
        log = state.tables.audit_log
        return [dict(r) for r in conn.execute(select(log).order_by(log.c.id)).mappings()]


# --- reading -----------------------------------------------------------------------------------


def test_list_keys_with_specs_and_current_versions(app: Flask) -> None:
    response = client(app, "coordinator").get("/templates")
    assert response.status_code == 200
    body = {item["key"]: item for item in response.get_json()}
    assert len(body) == 25
    assert body["digest"]["channels"] == ["email"]
    assert len(body["digest"]["current"]) == 2
    overdue = body["referral.overdue"]
    assert {p["name"] for p in overdue["placeholders"]} == {
        "referral_number", "due_at", "days_overdue", "referral_url",
    }  # fmt: skip
    assert {(c["channel"], c["language"], c["version"]) for c in overdue["current"]} == {
        ("email", "ru", 0), ("email", "en", 0), ("sms", "ru", 0), ("sms", "en", 0),
    }  # fmt: skip
    free = {p["name"] for p in body["raid.updated"]["placeholders"] if p["free_text"]}
    assert free == {"raid_title", "changes"}


def test_get_one_with_its_default(app: Flask) -> None:
    body = client(app).get("/templates/raid.invitation/email/ru").get_json()
    assert body["current_version"] == 0 and body["versions"] == []
    assert body["current"]["subject"] == "Приглашение на рейд {{ starts_at }}, {{ district }}"
    assert body["default"]["html"].startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    "path",
    ["/templates/no.such/sms/ru", "/templates/digest/sms/ru", "/templates/raid.reminder/sms/de"],
)
def test_unknown_targets_are_404(app: Flask, path: str) -> None:
    response = client(app).get(path)
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"


# --- who may --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["coordinator", "lead_specialist", "agency_staff", "auditor"])
def test_only_admins_write(app: Flask, role: str) -> None:
    c = client(app, role, subject=f"{role}-1")
    assert c.post(BASE + "/versions", json={"text": GOOD_SMS}).status_code == 403
    assert c.post(BASE + "/versions/0/activate").status_code == 403
    assert client(app).get(BASE).get_json()["versions"] == []


def test_staff_cannot_read_or_preview(app: Flask) -> None:
    c = client(app, "agency_staff", subject="staff-1")
    assert c.get("/templates").status_code == 403
    assert c.post(BASE + "/preview", json={}).status_code == 403


def test_without_a_token_401(app: Flask) -> None:
    assert app.test_client().get("/templates").status_code == 401


# --- saving ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field", "problem"),
    [
        (BASE, {"text": "{{ surname }} {{ referral_url }}"}, "text", "undeclared placeholder surname"),
        (BASE, {"text": "{{ ''.__class__.__mro__ }}"}, "text", "line 1: access to '__mro__' is not allowed"),
        (BASE, {"text": "{{ ''|attr('__class__') }}"}, "text", "unsafe: access to attribute '__class__'"),
        (BASE, {"text": "{% if %}"}, "text", "syntax error at line 1"),
        (BASE, {"subject": "Тема", "text": GOOD_SMS}, "subject", "an SMS has no subject"),
        (
            "/templates/raid.invitation/email/ru",
            {"subject": "{{ raid_title }}", "text": "{{ raid_url }}"},
            "subject",
            "placeholder raid_title is free text and may not appear in a subject",
        ),
        (
            "/templates/raid.invitation/sms/en",
            {"text": "{{ raid_title }} {{ raid_url }}"},
            "text",
            "placeholder raid_title is free text and may not appear in an SMS",
        ),
        (
            "/templates/raid.invitation/email/en",
            {"subject": "{{ starts_at }}", "text": "{{ raid_url }}", "html": "<p>{{ birth_date }}</p>"},
            "html",
            "undeclared placeholder birth_date",
        ),
        ("/templates/raid.invitation/email/en", {"text": "{{ raid_url }}"}, "subject", "an email needs a subject"),
    ],
)  # fmt: skip
def test_a_bad_template_is_422_naming_the_field(
    app: Flask, path: str, body: dict[str, Any], field: str, problem: str
) -> None:
    response = client(app).post(path + "/versions", json=body)
    assert response.status_code == 422, response.get_json()
    assert response.content_type == "application/problem+json"
    problem_body = response.get_json()
    assert problem_body["errors"][field][0].startswith(problem), problem_body
    assert problem_body["detail"].startswith(f"{field}: ")
    assert client(app).get(path).get_json()["versions"] == []
    assert audit_rows(app) == []


def test_missing_text_is_422(app: Flask) -> None:
    response = client(app).post(BASE + "/versions", json={"subject": None})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"text": ["Missing data for required field."]}


def test_versions_are_kept_rollback_works_and_every_change_is_audited(app: Flask) -> None:
    admin = client(app)
    first = admin.post(BASE + "/versions", json={"text": GOOD_SMS, "note": "короче"})
    assert first.status_code == 201, first.get_json()
    assert first.headers["Location"].endswith(BASE + "/versions/1")
    assert first.get_json()["version"] == 1 and first.get_json()["active"] is True
    assert first.get_json()["created_by"] == "admin-1"
    second = admin.post(BASE + "/versions", json={"text": "Вторая " + GOOD_SMS})
    assert second.get_json()["version"] == 2

    body = admin.get(BASE).get_json()
    assert body["current_version"] == 2
    assert [(v["version"], v["active"]) for v in body["versions"]] == [(2, True), (1, False)]
    assert body["versions"][1]["note"] == "короче"
    assert body["default"]["active"] is False

    preview = admin.post(BASE + "/preview", json={}).get_json()
    assert preview["version"] == 2 and preview["text"].startswith(
        "Вторая Просрочено: R-2026-000123"
    )

    rolled = admin.post(BASE + "/versions/1/activate")
    assert rolled.status_code == 200
    assert rolled.get_json()["current_version"] == 1
    assert admin.post(BASE + "/preview", json={}).get_json()["text"].startswith("Просрочено:")

    assert admin.post(BASE + "/versions/0/activate").get_json()["current_version"] == 0
    assert len(admin.get(BASE).get_json()["versions"]) == 2
    assert admin.post(BASE + "/versions/7/activate").status_code == 404

    rows = audit_rows(app)
    assert [(r["action"], r["entity"], r["entity_id"], r["actor"]) for r in rows] == [
        ("create", "template", "referral.overdue/sms/ru/v1", "admin-1"),
        ("create", "template", "referral.overdue/sms/ru/v2", "admin-1"),
        ("update", "template", "referral.overdue/sms/ru/v1", "admin-1"),
        ("update", "template", "referral.overdue/sms/ru/v0", "admin-1"),
    ]
    assert rows[0]["fields"] == ["text"] and rows[2]["fields"] == ["active"]


def test_an_idempotent_retry_stores_one_version(app: Flask) -> None:
    admin = client(app)
    headers = {"Idempotency-Key": "tpl-1"}
    a = admin.post(BASE + "/versions", json={"text": GOOD_SMS}, headers=headers)
    b = admin.post(BASE + "/versions", json={"text": GOOD_SMS}, headers=headers)
    assert a.status_code == b.status_code == 201
    assert b.headers.get("Idempotent-Replayed") == "true"
    assert a.get_json()["version"] == b.get_json()["version"] == 1
    assert len(admin.get(BASE).get_json()["versions"]) == 1
    assert len(audit_rows(app)) == 1


# --- preview -----------------------------------------------------------------------------------


def test_preview_of_the_default_sms_with_segments(app: Flask) -> None:
    response = client(app, "coordinator").post(BASE + "/preview", json={})
    assert response.status_code == 200
    body = response.get_json()
    assert body["version"] == 0 and body["subject"] is None and body["html"] is None
    # the samples link as an SMS will: through a short link, so the text fits one segment
    assert body["text"] == "R-2026-000123 просрочено на 3 дня: https://opora.example.ru/r/Xk3p9Qa"
    info = segments(body["text"])
    assert body["sms"] == {"encoding": "UCS-2", "parts": info.parts, "length": info.length}
    assert body["sms"]["parts"] == 1
    assert body["length"] == {"text": len(body["text"])}


def test_preview_of_a_draft_with_a_context(app: Flask) -> None:
    draft = {
        "text": "{{ referral_number }}: {{ days_overdue }} {{ days_overdue|plural('день', 'дня', 'дней') }}"
    }
    context = {"days_overdue": 21, "referral_number": "R-1", "surname": "Иванова"}
    body = client(app).post(BASE + "/preview", json={**draft, "context": context}).get_json()
    assert body["version"] is None
    assert body["text"] == "R-1: 21 день"
    assert body["sms"]["parts"] == 1 and body["sms"]["encoding"] == "UCS-2"
    assert client(app).get(BASE).get_json()["versions"] == []  # a preview stores nothing


def test_preview_of_an_email_draft_keeps_the_other_parts(app: Flask) -> None:
    path = "/templates/raid.updated/email/en/preview"
    body = client(app).post(path, json={"subject": "Changed: {{ starts_at }}"}).get_json()
    assert body["subject"] == "Changed: 12.12.2026 10:00"
    assert "What changed: время начала — 10:00" in body["text"]
    assert body["html"].startswith("<!DOCTYPE html>") and body["sms"] is None
    assert set(body["length"]) == {"subject", "text", "html"}


def test_preview_refuses_a_bad_draft_and_a_bad_context(app: Flask) -> None:
    bad = client(app).post(BASE + "/preview", json={"text": "{{ address }}"})
    assert bad.status_code == 422
    assert bad.get_json()["errors"] == {"text": ["undeclared placeholder address"]}
    wrong = client(app).post(BASE + "/preview", json={"context": {"days_overdue": "много"}})
    assert wrong.status_code == 422
    assert list(wrong.get_json()["errors"]) == ["context"]
    assert "много" not in wrong.get_json()["errors"]["context"][0]


def test_preview_never_shows_extra_context_keys(app: Flask) -> None:
    context = {"surname": "Иванова", "address": "ул. Советская, 1", "birth_date": "01.05.1990"}
    for path in ("/templates/raid.concern/email/ru", "/templates/raid.concern/sms/ru"):
        body = client(app).post(path + "/preview", json={"context": context}).get_json()
        shown = " ".join(str(body[p]) for p in ("subject", "text", "html"))
        assert "F-3A9C01B2D4" in shown
        assert not any(value in shown for value in context.values())


def test_the_openapi_document_lists_the_templates_api(app: Flask) -> None:
    paths = app.test_client().get("/openapi.json").get_json()["paths"]
    assert "/templates/{key}/{channel}/{language}/versions" in paths
    assert "/templates/{key}/{channel}/{language}/versions/{version}/activate" in paths
    assert "/templates/{key}/{channel}/{language}/preview" in paths


# --- the migration -----------------------------------------------------------------------------


def test_migration_0002_matches_the_model(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from shared import db as database

    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    database.upgrade("notifications", url, "0002")
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), TemplateVersion.metadata)
    engine.dispose()
    mine = [d for d in diff if "template_versions" in repr(d)]
    assert mine == []
    assert not any(d[0] == "add_table" and d[1].name == "template_versions" for d in diff)
    from alembic import command
    from sqlalchemy import inspect

    command.downgrade(database.alembic_config("notifications", url), "0001")
    engine = make_engine(url)
    assert "template_versions" not in inspect(engine).get_table_names()
    engine.dispose()
