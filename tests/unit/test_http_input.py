"""Bad input never reaches a view: sizes, nesting, numbers, unstorable strings, content types,
pages, the role check before the body, and 404 details that do not echo the path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import marshmallow as ma
import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from flask_smorest import Blueprint
from sqlalchemy import Column, Engine, MetaData, String, Table, func, insert, select

from shared.auth import require
from shared.auth.roles import COORDINATOR, LEAD_SPECIALIST
from shared.auth.tokens import issue_dev_token
from shared.config import Settings, load_settings
from shared.db import make_engine
from shared.errors import NotFound
from shared.http import PageArgs, create_service_app, db_session, page_schema, paginate
from shared.http.bodies import MAX_DEPTH, load_json
from shared.http.pagination import MAX_PAGE
from shared.tables import infrastructure_tables

metadata = MetaData()
TABLES = infrastructure_tables(metadata)
notes = Table(
    "notes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("text", String(200), nullable=False),
)


class NoteIn(ma.Schema):
    text = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    count = ma.fields.Integer()
    tags = ma.fields.List(ma.fields.Raw())
    extra = ma.fields.Raw()


class OptionalIn(ma.Schema):
    note = ma.fields.String()


class NoteOut(ma.Schema):
    id = ma.fields.String()
    text = ma.fields.String()


blp = Blueprint("notes", __name__, url_prefix="/notes")


@blp.route("", methods=["POST"])
@blp.arguments(NoteIn)
@blp.response(201, NoteOut)
@require(LEAD_SPECIALIST)
def add_note(data: dict[str, Any]) -> dict[str, Any]:
    row = {"id": str(uuid.uuid4()), "text": data["text"]}
    db_session().execute(insert(notes).values(**row))
    return row


@blp.route("/optional", methods=["POST"])
@blp.arguments(OptionalIn)
@blp.response(200, OptionalIn)
@require(LEAD_SPECIALIST)
def optional(data: dict[str, Any]) -> dict[str, Any]:
    return data


@blp.route("/coordinators", methods=["POST"])
@blp.arguments(NoteIn)
@blp.response(201, NoteOut)
@require(COORDINATOR)
def coordinators_only(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": "x", "text": data["text"]}


@blp.route("", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.response(200, page_schema(NoteOut))
@require(LEAD_SPECIALIST)
def list_notes(args: dict[str, Any]) -> Any:
    return paginate(db_session(), select(notes).order_by(notes.c.id), **args)


@blp.route("/<note_id>", methods=["GET"])
@blp.response(200, NoteOut)
@require(LEAD_SPECIALIST)
def get_note(note_id: str) -> Any:
    raise NotFound(f"no note {note_id}; notes are listed at /notes")


@blp.route("/raw", methods=["PUT"])
@require(LEAD_SPECIALIST)
def raw() -> dict[str, Any]:
    """A view that reads the body itself, as the FHIR views do."""
    return {"got": request.get_json(silent=True)}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        "registry",
        env={"OPORA_MODE": "embedded", "OPORA_DATA_DIR": str(tmp_path), "BROKER_URL": "memory://"},
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def app(settings: Settings, engine: Engine) -> Flask:
    app = create_service_app("registry", settings, tables=TABLES, blueprints=[blp], engine=engine)
    app.testing = True
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    return app


@pytest.fixture
def client(app: Flask, settings: Settings) -> FlaskClient:
    client = app.test_client()
    token = issue_dev_token(settings, subject="lead-1", roles=[LEAD_SPECIALIST], agency_id="c-1")
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(notes)).scalar_one())


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == status
    return body


def post_raw(client: FlaskClient, text: str, path: str = "/notes") -> Any:
    return client.post(
        path, data=text.encode("utf-8", "surrogatepass"), content_type="application/json"
    )


def test_deep_nesting_is_422_at_any_depth(client: FlaskClient, engine: Engine) -> None:
    for depth in (MAX_DEPTH + 1, 500, 10_000):
        body = '{"text": "x", "extra": ' + "[" * depth + "]" * depth + "}"
        answer = problem(post_raw(client, body), 422)
        assert answer["type"] == "https://opora.dev/problems/validation-error"
        assert any(path.startswith("extra") or path == "_body" for path in answer["errors"])
    ok = '{"text": "x", "extra": ' + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "}"
    assert post_raw(client, ok).status_code == 201
    assert stored(engine) == 1


def test_huge_numbers_are_422_naming_the_field(client: FlaskClient, engine: Engine) -> None:
    for number in ("9" * 5000, "9" * 25, "-" + "9" * 20, "1e400", "-1e999", "NaN", "Infinity"):
        answer = problem(post_raw(client, f'{{"text": "x", "count": {number}}}'), 422)
        assert set(answer["errors"]) == {"count"}, answer
    nested = problem(post_raw(client, '{"text": "x", "tags": [1, {"n": ' + "7" * 80 + "}]}"), 422)
    assert set(nested["errors"]) == {"tags.1.n"}
    assert post_raw(client, '{"text": "x", "count": 9223372036854775807}').status_code == 201
    assert stored(engine) == 1


@pytest.mark.parametrize("bad", ["a\\u0000b", "\\ud800", "x\\udfffy", "\\ude00\\ud83d"])
def test_nul_and_lone_surrogates_are_422_naming_the_field(
    client: FlaskClient, engine: Engine, bad: str
) -> None:
    answer = problem(post_raw(client, f'{{"text": "{bad}"}}'), 422)
    assert answer["errors"] == {"text": ["holds a NUL character or an unpaired surrogate"]}
    inner = problem(post_raw(client, f'{{"text": "ok", "tags": ["fine", "{bad}"]}}'), 422)
    assert set(inner["errors"]) == {"tags.1"}
    key = problem(post_raw(client, f'{{"text": "ok", "extra": {{"{bad}": 1}}}}'), 422)
    assert set(key["errors"]) == {"extra"}
    # A surrogate pair is one character, and stored.
    assert post_raw(client, '{"text": "\\ud83d\\ude00"}').status_code == 201
    assert stored(engine) == 1


def test_unstorable_query_and_path_values_are_422(client: FlaskClient) -> None:
    assert set(problem(client.get("/notes?page=1&q=%00"), 422)["errors"]) == {"q"}
    assert set(problem(client.get("/notes/a%00b"), 422)["errors"]) == {"note_id"}


def test_a_body_that_is_not_json_is_415(client: FlaskClient, engine: Engine) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        response = client.post("/notes/optional", data="note=x", content_type=content_type)
        answer = problem(response, 415)
        assert set(answer["errors"]) == {"Content-Type"}
    assert client.post("/notes/optional").status_code == 200, "no body at all is no body"
    assert problem(client.post("/notes", data="text=x", content_type="text/plain"), 415)
    assert client.post("/notes", json={"text": "x"}).status_code == 201
    fhir = client.post("/notes", data='{"text": "x"}', content_type="application/fhir+json")
    assert fhir.status_code == 201
    assert stored(engine) == 2


def test_views_reading_the_body_themselves_get_the_checked_parse(client: FlaskClient) -> None:
    assert client.put("/notes/raw", json={"a": [1, 2]}).get_json() == {"got": {"a": [1, 2]}}
    problem(client.put("/notes/raw", data='{"a": "\\u0000"}', content_type="application/json"), 422)
    deep = "[" * 5000 + "]" * 5000
    problem(client.put("/notes/raw", data=deep, content_type="application/json"), 422)


def test_a_body_over_the_limit_is_413(client: FlaskClient, engine: Engine) -> None:
    response = client.post("/notes", json={"text": "x", "extra": "y" * 70_000})
    problem(response, 413)
    assert stored(engine) == 0


def test_pages_are_bounded_and_named(client: FlaskClient) -> None:
    assert client.get(f"/notes?page={MAX_PAGE}").status_code == 200
    for query in (f"page={MAX_PAGE + 1}", "page=" + "9" * 30, "page=0"):
        assert set(problem(client.get(f"/notes?{query}"), 422)["errors"]) == {"page"}
    for query in ("page_size=0", "page_size=201", "page_size=" + "9" * 400):
        assert set(problem(client.get(f"/notes?{query}"), 422)["errors"]) == {"page_size"}


def test_the_role_check_comes_before_the_body(client: FlaskClient) -> None:
    for body in ({}, {"text": ""}, {"text": "x", "count": "many"}):
        answer = problem(client.post("/notes/coordinators", json=body), 403)
        assert "errors" not in answer
    problem(client.post("/notes/coordinators", data="[[[", content_type="application/json"), 403)
    problem(client.post("/notes/coordinators", data="x", content_type="text/plain"), 403)


def test_a_404_does_not_repeat_the_path(client: FlaskClient) -> None:
    for note_id in ("Иванова Мария", "42", "x.y-z"):
        answer = problem(client.get(f"/notes/{note_id}"), 404)
        assert note_id not in answer["detail"]
        assert answer["detail"] == "no note {note_id}; notes are listed at /notes"


def test_load_json_alone() -> None:
    assert load_json(b'{"a": [1, 2.5, "\\ud83d\\ude00", null]}') == {"a": [1, 2.5, "😀", None]}
    with pytest.raises(ValueError):
        load_json(b"{not json")
    with pytest.raises(ValueError):
        load_json(b"\xff\xfe")
