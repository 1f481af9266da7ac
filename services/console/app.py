"""The console's app factory: pages for people over the four services' HTTP APIs.

Every page needs a signed-in person except those marked :func:`public_page` (sign-in, the
links sent in messages that carry their own token, probes, static files). Views get the
person from :func:`current_person` and the service clients from :func:`console_clients`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from flask import Flask, current_app, g, redirect, request, session, url_for
from flask.wrappers import Response
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from services.console import i18n, security
from services.console.clients import Clients, make_http
from services.console.config import ConsoleConfig
from services.console.labels import badge_tone, label
from services.console.navigation import navigation
from services.console.people import Person
from services.console.sessions import DatabaseSessionInterface, purge_expired
from shared.config import Settings, load_settings
from shared.db import make_engine, make_sessionmaker

V = TypeVar("V")

HERE = Path(__file__).resolve().parent

ClientsFactory = Callable[[str | None, str | None], Clients]
_PUBLIC = "_console_public"


@dataclass
class ConsoleState:
    settings: Settings
    config: ConsoleConfig
    engine: Engine
    sessions: sessionmaker[Session]
    http: httpx.Client
    make_clients: ClientsFactory


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    clients_factory: ClientsFactory | None = None,
) -> Flask:
    """``clients_factory(token, correlation_id)``: tests pass fakes of :class:`Clients`."""
    settings = settings or load_settings("console")
    config = ConsoleConfig.from_settings(settings)
    engine = engine if engine is not None else make_engine(settings.database_url)
    app = Flask("opora.console", root_path=str(HERE))
    app.config.update(
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_SECURE=not settings.embedded,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_HEADERS=["X-CSRFToken"],
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    http = make_http(config.api_timeout)
    state = ConsoleState(
        settings=settings,
        config=config,
        engine=engine,
        sessions=make_sessionmaker(engine),
        http=http,
        make_clients=clients_factory
        or (lambda token, corr: Clients.connect(http, dict(config.api_urls), token, corr)),
    )
    app.extensions["console"] = state
    app.session_interface = DatabaseSessionInterface(
        state.sessions, dt.timedelta(hours=config.session_hours)
    )
    csrf = CSRFProtect(app)
    if config.oidc is not None:
        from services.console import oidc

        oidc.init_app(app, config.oidc, config.api_timeout)
    i18n.init_app(app, config.timezone)
    app.jinja_env.globals.update(
        current_person=current_person, label=label, badge_tone=badge_tone, navigation=navigation
    )
    security.init_app(app)

    from services.console.views import BLUEPRINTS
    from services.console.views.links import PROVIDER_CALLBACKS

    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    for view in PROVIDER_CALLBACKS:  # machine callers: their URL's signed token is the check
        csrf.exempt(view)
    app.add_url_rule("/healthz", "healthz", public_page(_healthz))
    app.add_url_rule("/readyz", "readyz", public_page(_readyz))
    app.before_request(_start_request)
    app.before_request(_require_person)
    try:
        purge_expired(state.sessions)
    except Exception:  # a database not migrated yet: /readyz says so
        app.logger.warning("sessions table not reachable at start-up")
    return app


def console() -> ConsoleState:
    state: ConsoleState = current_app.extensions["console"]
    return state


def public_page(view: V) -> V:
    """Mark a view as open without signing in."""
    setattr(view, _PUBLIC, True)
    return view


def current_person() -> Person | None:
    if "person" not in g:
        data = session.get("person")
        g.person = Person.from_dict(data) if isinstance(data, dict) else None
    person: Person | None = g.person
    return person


def console_clients() -> Clients:
    """The service clients, bound to the signed-in person's token (none on public pages)."""
    if "clients" not in g:
        g.clients = console().make_clients(session.get("token"), g.get("correlation_id"))
    clients: Clients = g.clients
    return clients


def _start_request() -> None:
    g.correlation_id = str(uuid.uuid4())


def _require_person() -> Response | None:
    if request.endpoint is None or request.endpoint == "static":
        return None
    view = current_app.view_functions.get(request.endpoint)
    if view is not None and getattr(view, _PUBLIC, False):
        return None
    if current_person() is not None:
        from services.console import auth

        return auth.refresh_if_needed()
    target = request.full_path if request.method == "GET" else "/"
    return redirect(url_for("auth.sign_in", next=target.rstrip("?")))  # type: ignore[return-value]


def _healthz() -> dict[str, str]:
    return {"status": "ok", "service": "console"}


def _readyz() -> tuple[dict[str, str], int]:
    try:
        with console().engine.connect() as conn:
            conn.execute(text("SELECT 1 FROM web_sessions WHERE 1 = 0"))
    except Exception:  # any database failure means not ready
        return {"status": "unavailable", "service": "console", "database": "error"}, 503
    return {"status": "ok", "service": "console", "database": "ok"}, 200
