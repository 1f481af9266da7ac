"""The service app factory: auth, problems, the request transaction, lists, idempotency, probes."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import marshmallow as ma
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import Column, Engine, MetaData, String, Table, func, insert, select
from sqlalchemy.orm import registry

from shared.auth import current_principal, optional_principal, require
from shared.auth.apikeys import create_api_key
from shared.auth.roles import COORDINATOR, LEAD_SPECIALIST
from shared.auth.tokens import issue_dev_token
from shared.config import Settings, load_settings
from shared.db import make_engine, make_sessionmaker
from shared.errors import RuleViolation
from shared.http import (
    PageArgs,
    create_service_app,
    db_session,
    idempotent,
    opora_app,
    page_schema,
    paginate,
    public,
)
from shared.logging import correlation_id
from shared.tables import infrastructure_tables

PERSONAL = "Иванова Мария Петровна"

metadata = MetaData()
TABLES = infrastructure_tables(metadata)
things = Table(
    "things",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(50), nullable=False, unique=True),
    Column("owner", String(120), nullable=False),
)


@dataclass
class Thing:
    id: str
    name: str
    owner: str


registry().map_imperatively(Thing, things)


class MemberIn(ma.Schema):
    birth_date = ma.fields.Date(required=True)


class ThingIn(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=50))
    members = ma.fields.List(ma.fields.Nested(MemberIn), load_default=list)


class ThingOut(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    owner = ma.fields.String()


blp = Blueprint("things", __name__, url_prefix="/things")


@blp.route("")
class Things(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(ThingOut))
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        return paginate(db_session(), select(things).order_by(things.c.name), **args)

    @idempotent
    @blp.arguments(ThingIn)
    @blp.response(201, ThingOut)
    def post(self, data: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        return add_thing(data)


def add_thing(data: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    row = {"id": str(uuid.uuid4()), "name": data["name"], "owner": current_principal().subject}
    db_session().execute(insert(things).values(**row))
    if data["name"] == "refuse":
        raise RuleViolation("the plan has no measure")
    return row, 201, {"Location": f"/things/{row['id']}"}


@blp.route("/inner", methods=["POST"])
@blp.arguments(ThingIn)
@blp.response(201, ThingOut)
@require(LEAD_SPECIALIST)
@idempotent
def add_inner(data: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """``@idempotent`` below the serialising decorators, as services may stack it."""
    return add_thing(data)


SLOW_STARTED = threading.Event()
SLOW_RELEASE = threading.Event()


@blp.route("/slow", methods=["POST"])
@blp.arguments(ThingIn)
@blp.response(201, ThingOut)
@idempotent
def add_slowly(data: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Holds its transaction open until the test lets it finish."""
    answer = add_thing(data)
    SLOW_STARTED.set()
    SLOW_RELEASE.wait(timeout=30)
    return answer


@blp.route("/orm", methods=["POST"])
@blp.arguments(ThingIn)
@blp.response(201, ThingOut)
def add_with_orm(data: dict[str, Any]) -> Thing:
    """The insert is flushed only at commit, after the view has returned."""
    thing = Thing(id=str(uuid.uuid4()), name=data["name"], owner="orm")
    db_session().add(thing)
    return thing


@blp.route("/rule", methods=["POST"])
def rule() -> None:
    raise RuleViolation("the plan has no measure", errors={"measures": ["at least one"]})


@blp.route("/boom")
def boom() -> None:
    raise ValueError(f"cannot process family {PERSONAL}")


@blp.route("/coordinators")
@require(COORDINATOR)
def coordinators_only() -> dict[str, str]:
    return {"ok": "yes"}


@blp.route("/open")
@public
def open_view() -> dict[str, str]:
    return {"principal": str(optional_principal())}


@blp.route("/raw", methods=["POST"])
def raw_json() -> dict[str, Any]:
    from flask import request

    return {"got": request.get_json()}


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
    return app


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def client(app: Flask, settings: Settings) -> FlaskClient:
    client = app.test_client()
    token = issue_dev_token(settings, subject="lead-1", roles=[LEAD_SPECIALIST], agency_id="c-1")
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"].startswith("https://opora.dev/problems/")
    assert body["title"]
    assert body["instance"] == response.request.path
    assert body["correlation_id"] == response.headers["X-Correlation-ID"]
    return dict(body)


# --- authentication ----------------------------------------------------------------------------


def test_requests_without_credentials_get_401_problem(anonymous: FlaskClient) -> None:
    response = anonymous.get("/things")
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "authentication required" in body["detail"]

    bad = anonymous.get("/things", headers={"Authorization": "Bearer nonsense"})
    assert assert_problem(bad, 401)["detail"] == "malformed token"
    basic = anonymous.get("/things", headers={"Authorization": "Basic dTpw"})
    assert_problem(basic, 401)


def test_api_keys_authenticate_agency_systems(
    anonymous: FlaskClient, engine: Engine, app: Flask
) -> None:
    with make_sessionmaker(engine)() as session:
        key = create_api_key(session, TABLES, agency_id="school-3", name="school")
        session.commit()
    for i, headers in enumerate(({"X-Api-Key": key}, {"Authorization": f"ApiKey {key}"})):
        response = anonymous.post("/things", json={"name": f"n{i}"}, headers=headers)
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["owner"] == f"apikey:{key[4:16]}"
    assert_problem(anonymous.get("/things", headers={"X-Api-Key": key + "x"}), 401)


def test_public_views_and_probes_need_no_credentials(anonymous: FlaskClient) -> None:
    assert anonymous.get("/things/open").get_json() == {"principal": "None"}
    assert anonymous.get("/healthz").get_json() == {"status": "ok", "service": "registry"}


def test_role_check_gives_403_problem(client: FlaskClient) -> None:
    body = assert_problem(client.get("/things/coordinators"), 403)
    assert "coordinator" in body["detail"]


def test_principal_and_correlation_do_not_leak_past_the_request(client: FlaskClient) -> None:
    assert client.get("/things").status_code == 200
    assert optional_principal() is None
    assert correlation_id.get() is None


# --- problems ----------------------------------------------------------------------------------


def test_invalid_body_gives_field_paths_and_stores_nothing(
    client: FlaskClient, engine: Engine
) -> None:
    response = client.post(
        "/things",
        json={"name": "ok", "members": [{"birth_date": "1990-05-01"}, {"birth_date": "x"}]},
    )
    body = assert_problem(response, 422)
    assert body["errors"] == {"members.1.birth_date": ["Not a valid date."]}
    assert "x" not in json.dumps(body["errors"])
    assert count(engine, things) == 0

    missing = assert_problem(client.post("/things", json={}), 422)
    assert missing["errors"] == {"name": ["Missing data for required field."]}


def test_rule_violation_is_422_with_detail_and_rolls_back(
    client: FlaskClient, engine: Engine
) -> None:
    body = assert_problem(client.post("/things/rule"), 422)
    assert body["detail"] == "the plan has no measure"
    assert body["type"] == "https://opora.dev/problems/rule-violation"
    assert body["errors"] == {"measures": ["at least one"]}

    assert_problem(client.post("/things", json={"name": "refuse"}), 422)
    assert count(engine, things) == 0, "the insert before the refusal was rolled back"


def test_unexpected_exception_is_500_without_message_or_trace(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="opora.http"):
        response = client.get("/things/boom")
    body = assert_problem(response, 500)
    text = response.get_data(as_text=True)
    assert "detail" not in body
    for leak in ("Иванова", "ValueError", "Traceback", "test_http.py", "cannot process"):
        assert leak not in text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "ValueError" in logged and body["correlation_id"] in logged
    assert "Иванова" not in caplog.text


def test_unknown_route_and_method_are_problems(client: FlaskClient, anonymous: FlaskClient) -> None:
    assert_problem(anonymous.get("/nowhere"), 404)
    response = client.delete("/things/boom")
    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_non_json_bodies_are_4xx_problems(client: FlaskClient) -> None:
    for path in ("/things", "/things/raw"):
        response = client.post(path, data="{not json", content_type="application/json")
        body = assert_problem(response, 400)
        assert body["type"] == "https://opora.dev/problems/bad-request"
    form = client.post("/things", data="name=x", content_type="application/x-www-form-urlencoded")
    assert 400 <= form.status_code < 500 and form.mimetype == "application/problem+json"


def test_integrity_error_at_commit_is_409_and_nothing_stored(
    client: FlaskClient, engine: Engine
) -> None:
    assert client.post("/things/orm", json={"name": "dup"}).status_code == 201
    body = assert_problem(client.post("/things/orm", json={"name": "dup"}), 409)
    assert "conflicts with stored data" in body["detail"]
    assert count(engine, things) == 1


def test_integrity_error_in_the_view_is_409(client: FlaskClient, engine: Engine) -> None:
    assert client.post("/things", json={"name": "same"}).status_code == 201
    assert_problem(client.post("/things", json={"name": "same"}), 409)
    assert count(engine, things) == 1


# --- lists -------------------------------------------------------------------------------------


def test_pagination_reports_totals_and_pages(client: FlaskClient) -> None:
    for i in range(7):
        assert client.post("/things", json={"name": f"t{i}"}).status_code == 201
    page = client.get("/things?page=2&page_size=3").get_json()
    assert page["total"] == 7 and page["pages"] == 3
    assert page["page"] == 2 and page["page_size"] == 3
    assert [t["name"] for t in page["items"]] == ["t3", "t4", "t5"]
    assert client.get("/things?page=4&page_size=3").get_json()["items"] == []
    too_big = assert_problem(client.get("/things?page_size=500"), 422)
    assert set(too_big["errors"]) == {"page_size"}


# --- idempotency -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/things", "/things/inner"])
def test_idempotency_key_replays_the_first_answer(
    client: FlaskClient, engine: Engine, path: str
) -> None:
    headers = {"Idempotency-Key": "order-1"}
    first = client.post(path, json={"name": "once"}, headers=headers)
    again = client.post(path, json={"name": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.mimetype == "application/json"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count(engine, things) == 1
    assert count(engine, TABLES.idempotency_keys) == 1

    other = client.post(path, json={"name": "different"}, headers=headers)
    body = assert_problem(other, 422)
    assert "reused with a different request" in body["detail"]
    assert count(engine, things) == 1

    without_key = client.post(path, json={"name": "once"})
    assert_problem(without_key, 409)


@pytest.mark.parametrize("path", ["/things", "/things/inner"])
def test_idempotency_stores_refusals_and_scopes_by_principal(
    client: FlaskClient, app: Flask, settings: Settings, engine: Engine, path: str
) -> None:
    headers = {"Idempotency-Key": "k"}
    first = client.post(path, json={"name": "refuse"}, headers=headers)
    replay = client.post(path, json={"name": "refuse"}, headers=headers)
    assert first.status_code == replay.status_code == 422
    assert replay.mimetype == "application/problem+json"
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json(force=True)["detail"] == "the plan has no measure"
    assert count(engine, things) == 0
    assert count(engine, TABLES.idempotency_keys) == 1

    other = app.test_client()
    token = issue_dev_token(settings, subject="lead-2", roles=[LEAD_SPECIALIST])
    response = other.post(
        path, json={"name": "mine"}, headers={**headers, "Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers


def test_a_retry_racing_the_first_request_waits_for_its_answer(
    client: FlaskClient, engine: Engine
) -> None:
    headers = {"Idempotency-Key": "race-1"}
    SLOW_STARTED.clear()
    SLOW_RELEASE.clear()
    answers: dict[str, Any] = {}

    def post(name: str) -> None:
        answers[name] = client.post("/things/slow", json={"name": "once"}, headers=headers)

    first = threading.Thread(target=post, args=("first",))
    first.start()
    assert SLOW_STARTED.wait(timeout=10)
    retry = threading.Thread(target=post, args=("retry",))
    retry.start()
    retry.join(timeout=0.5)
    assert retry.is_alive()  # waiting on the first request's claim of the key
    SLOW_RELEASE.set()
    first.join(timeout=10)
    retry.join(timeout=10)
    assert answers["first"].status_code == answers["retry"].status_code == 201
    assert answers["retry"].headers["Idempotent-Replayed"] == "true"
    assert answers["retry"].get_json() == answers["first"].get_json()
    assert count(engine, things) == 1
    assert count(engine, TABLES.idempotency_keys) == 1


def test_invalid_idempotency_key_is_400(client: FlaskClient) -> None:
    body = assert_problem(
        client.post("/things", json={"name": "a"}, headers={"Idempotency-Key": "x" * 201}), 400
    )
    assert set(body["errors"]) == {"Idempotency-Key"}


# --- correlation, probes, metrics, OpenAPI -----------------------------------------------------


def test_correlation_id_is_echoed_or_generated(client: FlaskClient) -> None:
    echoed = client.get("/things", headers={"X-Correlation-ID": "req-123.abc_x"})
    assert echoed.headers["X-Correlation-ID"] == "req-123.abc_x"
    for bad in ("", "has space", "x" * 65, "a/b"):
        generated = client.get("/things", headers={"X-Correlation-ID": bad})
        assert uuid.UUID(generated.headers["X-Correlation-ID"])
    problem = client.get("/things/boom", headers={"X-Correlation-ID": "corr-9"})
    assert problem.get_json(force=True)["correlation_id"] == "corr-9"


def test_readyz_checks_database_and_broker(anonymous: FlaskClient, app: Flask) -> None:
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["database"] == "ok" and response.get_json()["broker"] == "ok"

    with app.app_context():
        opora_app().engine.dispose()
        broken = make_engine("sqlite:////nonexistent-dir/x.db")
        opora_app().engine = broken
    down = anonymous.get("/readyz")
    assert down.status_code == 503
    assert down.get_json()["database"] == "error"


def test_metrics_count_requests_by_url_rule(client: FlaskClient, anonymous: FlaskClient) -> None:
    client.get("/things")
    client.get("/things")
    client.get("/nowhere")
    text = anonymous.get("/metrics").get_data(as_text=True)
    assert 'opora_http_requests_total{endpoint="/things",method="GET",status="200"} 2.0' in text
    assert 'endpoint="<unmatched>"' in text
    assert "opora_http_request_duration_seconds_bucket" in text


def test_two_apps_in_one_process_keep_separate_metrics(
    settings: Settings, engine: Engine, client: FlaskClient
) -> None:
    other = create_service_app("registry", settings, tables=TABLES, engine=engine)
    client.get("/things")
    assert "/things" not in other.test_client().get("/metrics").get_data(as_text=True)


def test_openapi_document_lists_paths_security_and_problems(anonymous: FlaskClient) -> None:
    response = anonymous.get("/openapi.json")
    assert response.status_code == 200
    spec = json.loads(response.get_data(as_text=True))
    assert spec["openapi"] == "3.0.3" and spec["info"]["title"] == "Opora registry"
    assert {"/things", "/things/rule", "/things/open"} <= set(spec["paths"])
    for path in ("/things", "/things/inner"):
        post = spec["paths"][path]["post"]
        assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert spec["paths"]["/things/open"]["get"]["security"] == []
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey", "linkToken"}
    error = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]
    assert "application/problem+json" in error
    assert "ThingOutPage" in spec["components"]["schemas"]
    assert anonymous.get("/docs").status_code == 200
