"""The console's views with the service clients FAKED at the client-class boundary
(``create_app(clients_factory=...)``): fast checks of what a page does with what the APIs
answer, a service that is down, and the security rules. The browser tests run the real ones."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from services.console.app import create_app
from services.console.clients import ServiceDown
from services.console.clients.base import ApiError, _api_error
from services.console.views.auth import safe_next
from shared import db
from shared.config import Settings, load_settings

TEMPLATES = Path(__file__).resolve().parents[2] / "services" / "console" / "templates"
AGENCIES = [
    {
        "id": "family-centre",
        "name": "КЦСОН",
        "districts": ["Тарногский район"],
        "contacts": [
            {"person_id": "demo-coordinator", "name": "Координатор (демо)", "role": "coordinator"},
        ],
    },
    {
        "id": "tarnoga-pdn",
        "name": "ПДН",
        "districts": ["Тарногский район"],
        "contacts": [
            {"person_id": "demo-inspector", "name": "Инспектор ПДН (демо)", "role": "inspector"}
        ],
    },
]


class FakeReferrals:
    def __init__(self, down: bool = False) -> None:
        self.down = down

    def agencies(self) -> list[dict[str, Any]]:
        if self.down:
            raise ServiceDown("referrals", "timeout")
        return AGENCIES

    def new_signals(self, *, district: str | None = None) -> list[dict[str, Any]]:
        if self.down:
            raise ServiceDown("referrals", "timeout")
        due = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=90)
        return [{"priority": "red", "triage_due_at": due.isoformat()}]

    def referrals_awaiting(self, agency_id: str) -> int:
        return 4

    def overdue_referrals(self, *, district: str | None = None) -> tuple[int, int]:
        if self.down:
            raise ServiceDown("referrals", "timeout")
        return (3, 1)


class FakeRegistry:
    def case(self, case_id: str) -> dict[str, Any]:
        raise ServiceDown("registry", "timeout")

    def workspace(self, case_id: str, *, contacts: int = 50) -> dict[str, Any]:
        raise ServiceDown("registry", "timeout")

    def catalogue(self, name: str) -> list[dict[str, Any]]:
        raise ServiceDown("registry", "timeout")

    def pending_intakes(self, *, district: str | None = None) -> int:
        return 2

    def approvals_waiting(self, *, district: str | None = None) -> int:
        return 3

    def overdue_measures(self, *, as_of: dt.date | None = None, **scope: Any) -> int:
        return 5 if as_of else 1


class FakeRaids:
    def __init__(self, down: bool = False) -> None:
        self.down = down

    def raids_on(self, day: dt.date, *, person_id: str | None = None) -> int:
        if self.down:
            raise ServiceDown("raids", "ConnectError")
        return 1

    def raids(self, **filters: Any) -> dict[str, Any]:
        if self.down:
            raise ServiceDown("raids", "ConnectError")
        self.asked = filters
        raid = {
            "id": "r1",
            "title": "Межведомственный рейд",
            "purpose": "planned_check",
            "district": "Тарногский район",
            "status": "confirmed",
            "local_start": "09:00",
            "local_end": "17:00",
            "family_count": 4,
            "participant_count": 3,
        }
        return {"items": [raid], "total": 1, "page": 1, "page_size": 100}


class FakeNotifications:
    def short_link_target(self, code: str) -> str | None:
        return {"abc": "http://console.test/cases/1", "evil": "https://evil.test/x"}.get(code)


class FakeClients:
    def __init__(self, *, raids_down: bool = False, referrals_down: bool = False) -> None:
        self.registry = FakeRegistry()
        self.referrals = FakeReferrals(referrals_down)
        self.raids = FakeRaids(raids_down)
        self.notifications = FakeNotifications()


@pytest.fixture
def make_app(console_settings: Settings) -> Iterator[Any]:
    settings = console_settings

    def build(**fake: bool) -> Flask:
        app = create_app(settings, clients_factory=lambda _token, _corr: FakeClients(**fake))  # type: ignore[arg-type,return-value]
        return app

    yield build


def csrf(client: FlaskClient, path: str = "/sign-in") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def signed_in(app: Flask, person_id: str = "demo-coordinator") -> FlaskClient:
    client = app.test_client()
    answer = client.post(
        "/sign-in", data={"person_id": person_id, "csrf_token": csrf(client), "next": "/"}
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    return client


def test_a_page_needs_sign_in_and_remembers_where_it_was_going(make_app: Any) -> None:
    answer = make_app().test_client().get("/cases/42")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/sign-in?next=/cases/42"


def test_sign_in_page_lists_the_directory_staff_and_the_extra_demo_people(make_app: Any) -> None:
    page = make_app().test_client().get("/sign-in").get_data(as_text=True)
    for text in ("Координатор (демо)", "КЦСОН", "Инспектор ПДН", "Администратор (демо)"):
        assert text in page


def test_sign_in_page_says_when_the_directory_is_down(make_app: Any) -> None:
    answer = make_app(referrals_down=True).test_client().get("/sign-in")
    assert answer.status_code == 200
    assert "Справочник ведомств сейчас не отвечает" in answer.get_data(as_text=True)


def test_a_form_without_its_csrf_token_is_refused(make_app: Any) -> None:
    answer = make_app().test_client().post("/sign-in", data={"person_id": "demo-coordinator"})
    assert answer.status_code == 400
    assert "Форма устарела" in answer.get_data(as_text=True)


def test_one_cannot_sign_in_as_someone_the_directory_does_not_know(make_app: Any) -> None:
    client = make_app().test_client()
    answer = client.post("/sign-in", data={"person_id": "mallory", "csrf_token": csrf(client)})
    assert answer.headers["Location"] == "/sign-in"
    assert client.get("/").status_code == 302


def test_the_session_cookie_is_httponly_samesite_and_changes_at_sign_in(make_app: Any) -> None:
    app = make_app()
    client = app.test_client()
    token = csrf(client)
    before = client.get_cookie("opora_session")
    answer = client.post("/sign-in", data={"person_id": "demo-coordinator", "csrf_token": token})
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    after = client.get_cookie("opora_session")
    assert after is not None and (before is None or before.value != after.value)


def test_home_shows_counters_and_the_person_as_the_directory_knows_them(make_app: Any) -> None:
    client = signed_in(make_app())
    answer = client.get("/")
    page = answer.get_data(as_text=True)
    assert answer.headers["Cache-Control"] == "no-store"
    assert "Координатор (демо)" in page and "КЦСОН" in page
    assert 'href="/signals?status=new&amp;priority=red"' in page
    assert "ближайший срок: 1 ч 29 мин" in page or "ближайший срок: 1 ч 30 мин" in page
    assert 'href="/families?intake=pending"' in page
    assert 'href="/approvals?district=' in page
    week = page.split("Срок на этой неделе")[0].rsplit('class="counter__count">', 1)[1]
    assert week.startswith("4<")  # due by next Monday (5) less the overdue (1)
    overdue = page.split('id="panel-overdue-referrals"')[1].split("</section>")[0]
    assert 'href="/referrals?view=overdue"' in overdue
    assert 'href="/referrals?view=escalated"' in overdue
    counts = re.findall(r'class="counter__count">(\d+)<', overdue)
    assert counts == ["3", "1"]  # overdue, of which escalated


def test_a_service_down_shows_a_message_in_its_panel_not_a_500(make_app: Any) -> None:
    client = signed_in(make_app(raids_down=True))
    answer = client.get("/")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    raids = page.split('id="panel-raids"')[1]
    assert "Рейды: служба сейчас не отвечает" in raids
    assert "Возможные дубли к решению" in page


def test_agency_staff_see_their_agency_s_referrals(make_app: Any) -> None:
    page = signed_in(make_app(), "demo-inspector").get("/").get_data(as_text=True)
    assert "Направления ждут ответа" in page and "Сигналы к разбору" not in page
    assert "Просроченные направления" not in page  # the coordinator's
    assert "Инспектор ПДН" in page


def test_english_is_the_second_language(make_app: Any) -> None:
    client = signed_in(make_app())
    client.post("/language", data={"lang": "en", "csrf_token": csrf(client, "/"), "next": "/"})
    page = client.get("/").get_data(as_text=True)
    assert 'lang="en"' in page and "What needs me" in page


def test_sign_out_ends_the_session(make_app: Any) -> None:
    client = signed_in(make_app())
    client.post("/sign-out", data={"csrf_token": csrf(client, "/")})
    assert client.get("/").status_code == 302


def test_short_links_lead_only_to_our_own_pages(make_app: Any) -> None:
    client = make_app().test_client()
    assert client.get("/r/abc").headers["Location"] == "http://console.test/cases/1"
    assert client.get("/r/evil").status_code == 404
    assert client.get("/r/nothing").status_code == 404


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/cases/1?x=2", "/cases/1?x=2"),
        ("https://evil.test/", "/"),
        ("//evil.test", "/"),
        ("/\\evil.test", "/"),
        ("/\tevil", "/"),
        ("", "/"),
    ],
)
def test_after_sign_in_only_paths_of_this_site(target: str, safe: str) -> None:
    assert safe_next(target) == safe


def test_no_template_has_inline_script_or_style() -> None:
    """The Content-Security-Policy forbids them; this finds them before a browser would."""
    problems = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for match in re.finditer(r"<script(?![^>]*\bsrc=)[^>]*>", text):
            problems.append(f"{path.name}: inline {match.group(0)}")
        if re.search(r"\sstyle\s*=", text) or "<style" in text:
            problems.append(f"{path.name}: style attribute or element")
        if re.search(r"\son[a-z]+\s*=", text):
            problems.append(f"{path.name}: inline event handler")
    assert not problems, problems


def test_problem_json_becomes_an_error_with_field_messages() -> None:
    import httpx

    answer = httpx.Response(
        422,
        json={
            "title": "Unprocessable",
            "detail": "bad",
            "errors": {"json.deadline": ["Not a date"]},
        },
        headers={"Content-Type": "application/problem+json"},
    )
    error = _api_error("registry", answer)
    assert isinstance(error, ApiError) and error.status == 422
    assert error.errors == {"json.deadline": ["Not a date"]}


def test_a_form_keeps_what_was_typed_and_puts_api_errors_on_their_fields(make_app: Any) -> None:
    from flask import render_template_string

    from services.console.forms import FORM_ERRORS, FormState

    app = make_app()
    fields = {"title": "Название", "deadline": "Срок"}
    with app.test_request_context(
        "/",
        method="POST",
        data={"title": "Консультации", "deadline": "31.02", "idempotency_key": "k-12345678"},
    ):
        form = FormState.from_request(fields)
        form.fail(
            ApiError(
                "registry",
                422,
                "Unprocessable",
                None,
                {"json.deadline": ["Not a valid date."], "json.agency_id": ["Unknown."]},
            )
        )
        assert form.idempotency_key != "k-12345678"  # the refusal is stored under the old one
        assert form.errors == {"deadline": ["Not a valid date."], FORM_ERRORS: ["Unknown."]}
        html = render_template_string(
            '{% from "macros/components.html" import error_summary, text_field, form_keys %}'
            "{{ error_summary(form) }}{{ form_keys(form) }}"
            '{{ text_field(form, "title") }}{{ text_field(form, "deadline") }}',
            form=form,
        )
    assert 'value="Консультации"' in html and 'value="31.02"' in html
    assert '<a href="#field-deadline">Срок: Not a valid date.</a>' in html
    assert 'aria-describedby="error-deadline"' in html and 'aria-invalid="true"' in html
    assert f'name="idempotency_key" value="{form.idempotency_key}"' in html


def test_production_needs_a_secret_key_and_an_oidc_provider(tmp_path: Path) -> None:
    from services.console.config import ConsoleConfig
    from shared.config import ConfigError

    env = {"OPORA_MODE": "production", "CONSOLE_DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}
    with pytest.raises(ConfigError, match="CONSOLE_SECRET_KEY"):
        ConsoleConfig.from_settings(load_settings("console", env=env))
    env["CONSOLE_SECRET_KEY"] = "k" * 32
    with pytest.raises(ConfigError, match="CONSOLE_OIDC_ISSUER"):
        ConsoleConfig.from_settings(load_settings("console", env=env))
    env["CONSOLE_OIDC_ISSUER"] = "https://sso.example.org/realms/opora/"
    env["CONSOLE_OIDC_CLIENT_ID"] = "opora-console"
    config = ConsoleConfig.from_settings(load_settings("console", env=env))
    assert config.oidc is not None and config.oidc.issuer == "https://sso.example.org/realms/opora"


def test_htmx_requests_carry_the_csrf_token_in_a_header(make_app: Any) -> None:
    client = signed_in(make_app())
    token = csrf(client, "/")
    refused = client.post("/language", data={"lang": "en"})
    accepted = client.post("/language", data={"lang": "en"}, headers={"X-CSRFToken": token})
    assert refused.status_code == 400 and accepted.status_code == 302


def test_a_page_whose_one_service_is_down_says_so_in_a_503_not_a_500(make_app: Any) -> None:
    answer = signed_in(make_app()).get("/cases/42")
    assert answer.status_code == 503
    page = answer.get_data(as_text=True)
    assert "Реестр семей: служба сейчас не отвечает" in page
    assert answer.headers["Cache-Control"] == "no-store"


def test_production_cookies_are_secure(tmp_path: Path) -> None:
    env = {
        "OPORA_MODE": "production",
        "OPORA_DATA_DIR": str(tmp_path),
        "CONSOLE_DATABASE_URL": f"sqlite:///{tmp_path / 'console.db'}",
        "CONSOLE_SECRET_KEY": "k" * 32,
        "CONSOLE_OIDC_ISSUER": "https://sso.example.org/realms/opora",
        "CONSOLE_OIDC_CLIENT_ID": "opora-console",
        "OPORA_PUBLIC_URL": "https://opora.example.org",
    }
    settings = load_settings("console", env=env)
    db.upgrade("console", settings.database_url)
    app = create_app(settings, clients_factory=lambda _t, _c: FakeClients())  # type: ignore[arg-type,return-value]
    answer = app.test_client().get("/sign-in")
    cookie = answer.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Войти через единый вход" in answer.get_data(as_text=True)
    assert "form-action 'self' https://sso.example.org" in answer.headers["Content-Security-Policy"]


def test_a_demo_token_never_outlives_what_the_services_accept(tmp_path: Path) -> None:
    import json as jsonlib

    import jwt
    from sqlalchemy import create_engine, text

    env = {
        "OPORA_MODE": "embedded",
        "OPORA_DATA_DIR": str(tmp_path),
        "OPORA_JWT_SECRET": "test-secret-test-secret-test-secret",
        "CONSOLE_SESSION_HOURS": "24",
        "OPORA_JWT_MAX_LIFETIME_SECONDS": "3600",
    }
    settings = load_settings("console", env=env)
    db.upgrade("console", settings.database_url)
    app = create_app(settings, clients_factory=lambda _t, _c: FakeClients())  # type: ignore[arg-type,return-value]
    signed_in(app)
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        data = jsonlib.loads(conn.execute(text("SELECT data FROM web_sessions")).scalar_one())
    engine.dispose()
    claims = jwt.decode(data["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["sub"] == "demo-coordinator" and claims["agency"] == "family-centre"


@pytest.mark.integration
def test_sessions_live_in_postgresql_in_production(postgres_admin_url: str, tmp_path: Path) -> None:
    """Two console processes share one sessions database: a session made through one app is
    found by another (each its own engine and pool)."""
    import uuid

    import sqlalchemy as sa

    name = f"opora_console_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        env = {
            "OPORA_MODE": "embedded",
            "OPORA_DATA_DIR": str(tmp_path),
            "OPORA_JWT_SECRET": "test-secret-test-secret-test-secret",
            "CONSOLE_DATABASE_URL": url,
        }
        settings = load_settings("console", env=env)
        db.upgrade("console", settings.database_url)
        first, second = (
            create_app(settings, clients_factory=lambda _t, _c: FakeClients())  # type: ignore[arg-type,return-value]
            for _ in range(2)
        )
        client = signed_in(first)
        cookie = client.get_cookie("opora_session")
        assert cookie is not None
        other = second.test_client()
        other.set_cookie("opora_session", cookie.value)
        answer = other.get("/")
        assert answer.status_code == 200 and "Координатор (демо)" in answer.get_data(as_text=True)
        for app in (first, second):
            app.extensions["console"].engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_every_menu_entry_opens_a_page_the_console_serves(make_app: Any) -> None:
    """A menu entry with no page behind it is a dead end for the person who clicks it."""
    from services.console.navigation import AREAS

    app = make_app()
    adapter = app.url_map.bind("console.test")
    for url, _title, _roles in AREAS:
        endpoint, _args = adapter.match(url, method="GET")
        assert endpoint != "static", url


def test_the_raids_counter_opens_the_raids_of_that_day(make_app: Any) -> None:
    """The home page's "tomorrow's raids" links to /raids?date=...: that list answers with the
    day's raids, labelled (no raw codes), and a date it cannot read is said so, not a 500."""
    client = signed_in(make_app())
    home = client.get("/").get_data(as_text=True)
    link = re.search(r'href="(/raids\?[^"]+)"', home)
    assert link, home
    page = client.get(link.group(1).replace("&amp;", "&"))
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Межведомственный рейд" in text and "Плановая проверка" in text
    assert "Подтверждён" in text and "planned_check" not in text
    assert "/raids/r1.ics" in text
    bad = client.get("/raids?date=32.13.2026").get_data(as_text=True)
    assert "Дату не удалось прочитать" in bad
    down = signed_in(make_app(raids_down=True)).get("/raids")
    assert down.status_code == 503 and "raids" in down.get_data(as_text=True).lower()
