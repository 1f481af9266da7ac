"""The Flask app factory every service uses: one way to authenticate, handle errors, manage the
request's database session, expose health, metrics and the OpenAPI document."""

from __future__ import annotations

import http
import re
import time
import uuid
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import flask_smorest
from flask import Flask, current_app, g, jsonify, request
from flask.wrappers import Response
from flask_smorest.utils import prepare_response
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from shared.auth.apikeys import verify_api_key
from shared.auth.context import reset_principal, set_principal
from shared.auth.policy import ROLES_ATTR, check_roles
from shared.auth.principal import Principal
from shared.auth.tokens import TokenVerifier
from shared.config import Settings
from shared.db import make_engine, make_sessionmaker, transaction
from shared.errors import Conflict, DomainError, ServiceUnavailable, Unauthorized
from shared.http import bodies, problems
from shared.http.observability import (
    HttpMetrics,
    database_ready,
    log_request,
    run_probes,
)
from shared.logging import correlation_id
from shared.tables import InfrastructureTables

V = TypeVar("V")

CORRELATION_HEADER = "X-Correlation-ID"
CORRELATION_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
DOCS_BLUEPRINT = "api-docs"
MAX_BODY_BYTES = 10 * 1024 * 1024
SWAGGER_UI_PATH = "/docs/assets/"
SWAGGER_UI_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"
"""Swagger UI's files, copied from the npm package swagger-ui-dist by `make setup` (and the
image build): /docs works on a closed network, never loading from a CDN."""
SWAGGER_UI_FILES = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"}
)

_PUBLIC_ATTR = "_opora_public"
_SESSION = "_opora_session"
_STARTED = "_opora_started"
_CORRELATION_TOKEN = "_opora_correlation_token"
_PRINCIPAL_TOKEN = "_opora_principal_token"
_RESPONSE_HOOKS = "_opora_response_hooks"

ResponseHook = Callable[[Response, Session], None]


@dataclass
class OporaApp:
    """What a service's views need from the app, in ``app.extensions["opora"]``."""

    service: str
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    tables: InfrastructureTables
    verifier: TokenVerifier
    metrics: HttpMetrics
    api: flask_smorest.Api


class _Api(flask_smorest.Api):
    """flask-smorest with its errors in our problem format, documented as such."""

    ERROR_SCHEMA = problems.ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        return problems.from_http_exception(error)

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, problems.PROBLEM_MEDIA_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "Error", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, problems.PROBLEM_MEDIA_TYPE)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)


def create_service_app(
    service: str,
    settings: Settings,
    *,
    tables: InfrastructureTables,
    blueprints: Sequence[flask_smorest.Blueprint] = (),
    version: str = "1",
    engine: Engine | None = None,
) -> Flask:
    """Build a service's Flask app; logging is configured by the process, not here."""
    if settings.service != service:
        raise ValueError(f"settings of {settings.service!r} given to the {service!r} app")
    app = Flask(f"opora.{service}")
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Russian text stays readable
    app.config.update(
        API_TITLE=f"Opora {service}",
        API_VERSION=version,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_PATH,
        API_SPEC_OPTIONS={"security": [{"bearer": []}, {"apiKey": []}]},
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
    )
    engine = engine if engine is not None else make_engine(settings.database_url)
    api = _Api(app)
    app.extensions["opora"] = OporaApp(
        service=service,
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        tables=tables,
        verifier=TokenVerifier(settings),
        metrics=HttpMetrics(),
        api=api,
    )
    api.spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    api.spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
    )
    api.spec.components.security_scheme(
        "linkToken", {"type": "apiKey", "in": "query", "name": "token"}
    )
    from shared.http.audit import audit_blueprint

    for blueprint in (*blueprints, audit_blueprint()):
        api.register_blueprint(blueprint)

    app.before_request(_start_request)
    app.before_request(_authenticate)
    app.before_request(_check_request)
    app.after_request(_finish_request)
    app.teardown_request(_teardown_request)
    app.register_error_handler(DomainError, problems.from_domain_error)
    app.register_error_handler(IntegrityError, _integrity_error)
    app.register_error_handler(OperationalError, _database_unavailable)
    app.register_error_handler(PoolTimeout, _database_unavailable)
    app.register_error_handler(Exception, _unhandled)

    app.add_url_rule("/healthz", "healthz", public(_healthz))
    app.add_url_rule("/readyz", "readyz", public(_readyz))
    app.add_url_rule("/metrics", "metrics", public(_metrics))
    app.add_url_rule(SWAGGER_UI_PATH + "<name>", "api-docs-assets", public(_swagger_ui_asset))
    return app


def opora_app() -> OporaApp:
    """The service context of the current Flask app."""
    state: OporaApp = current_app.extensions["opora"]
    return state


def db_session() -> Session:
    """The request's session, created on first use.

    It commits after a response below 400 and rolls back otherwise, so a view never commits
    and a failed request leaves nothing half-stored.
    """
    session: Session | None = g.get(_SESSION)
    if session is None:
        session = opora_app().sessions()
        setattr(g, _SESSION, session)
    return session


def public(view: V) -> V:
    """Mark a view (function, MethodView class or method) as open without authentication.

    Put it below ``@blp.route`` so that the OpenAPI document shows the view without security.
    """
    setattr(view, _PUBLIC_ATTR, True)
    if callable(view) and not isinstance(view, type):
        apidoc = deepcopy(getattr(view, "_apidoc", {}))
        apidoc.setdefault("manual_doc", {})["security"] = []
        setattr(view, "_apidoc", apidoc)  # noqa: B010
    return view


def link_protected(view: V) -> V:
    """A view opened by a signed link (``?token=``, see shared.auth.links) instead of a login;
    the view itself checks the token against its purpose and subject."""
    public(view)
    if callable(view) and not isinstance(view, type):
        getattr(view, "_apidoc")["manual_doc"]["security"] = [{"linkToken": []}]  # noqa: B009
    return view


def add_response_hook(hook: ResponseHook) -> None:
    """Run ``hook(response, session)`` on the final response, before the request's commit or
    rollback; what it writes to the session commits with the request."""
    g.setdefault(_RESPONSE_HOOKS, []).append(hook)


# --- request life cycle ------------------------------------------------------------------------


def _start_request() -> None:
    setattr(g, _STARTED, time.perf_counter())
    incoming = request.headers.get(CORRELATION_HEADER, "")
    corr = incoming if CORRELATION_PATTERN.match(incoming) else str(uuid.uuid4())
    g.correlation_id = corr
    setattr(g, _CORRELATION_TOKEN, correlation_id.set(corr))


def _authenticate() -> None:
    if request.routing_exception is not None or _is_open():
        return
    setattr(g, _PRINCIPAL_TOKEN, set_principal(_principal_from_headers()))


def _check_request() -> None:
    """The view's roles first, then what the request carries (shared.http.bodies): a caller
    who may not act gets 403 before any of its input is looked at."""
    if request.routing_exception is not None:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if not _is_open():
        roles = _declared(view, ROLES_ATTR)
        if roles and request.method != "OPTIONS":
            check_roles(roles)
    bodies.check_request(view)


def _is_open() -> bool:
    if request.path in OPEN_PATHS or request.blueprint == DOCS_BLUEPRINT:
        return True
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(_declared(view, _PUBLIC_ATTR))


def _declared(view: Any, attr: str) -> Any:
    """``attr`` as set on a view function, or on a class view or its method for this request."""
    if view is None:
        return None
    found = getattr(view, attr, None)
    if found:
        return found
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return None
    method = getattr(view_class, request.method.lower(), None)
    return getattr(view_class, attr, None) or getattr(method, attr, None)


def _principal_from_headers() -> Principal:
    state = opora_app()
    authorization = request.headers.get("Authorization", "").strip()
    api_key = request.headers.get("X-Api-Key", "").strip()
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            return state.verifier.verify(credentials)
        if scheme.lower() == "apikey" and credentials:
            api_key = credentials
        else:
            raise Unauthorized("unsupported Authorization header; use Bearer or ApiKey")
    if api_key:
        # Its own short transaction: the last-used stamp must not hold locks for the request.
        with transaction(state.sessions) as session:
            return verify_api_key(session, state.tables, api_key)
    raise Unauthorized("authentication required: send a bearer token or an API key")


def _finish_request(response: Response) -> Response:
    response = _end_transaction(response)
    response.headers[CORRELATION_HEADER] = g.get("correlation_id") or correlation_id.get() or ""
    started = g.get(_STARTED, time.perf_counter())
    elapsed = time.perf_counter() - started
    endpoint = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    opora_app().metrics.observe(request.method, endpoint, response.status_code, elapsed)
    log_request(request.method, endpoint, response.status_code, elapsed)
    return response


def _end_transaction(response: Response) -> Response:
    session: Session | None = g.get(_SESSION)
    hooks: list[ResponseHook] = g.pop(_RESPONSE_HOOKS, [])
    if session is None:
        return response
    try:
        for hook in hooks:
            hook(response, session)
        if response.status_code >= 400:
            session.rollback()
            return response
        session.commit()
    except IntegrityError:
        session.rollback()
        return _integrity_error(None)
    except SQLAlchemyError as exc:
        session.rollback()
        return _database_unavailable(exc)
    return response


def _teardown_request(_exc: BaseException | None) -> None:
    session: Session | None = g.pop(_SESSION, None)
    if session is not None:
        session.close()
    principal_token = g.pop(_PRINCIPAL_TOKEN, None)
    if principal_token is not None:
        reset_principal(principal_token)
    correlation_token = g.pop(_CORRELATION_TOKEN, None)
    if correlation_token is not None:
        correlation_id.reset(correlation_token)


# --- errors ------------------------------------------------------------------------------------


def _integrity_error(_exc: IntegrityError | None) -> Response:
    """Constraint names and values stay out of the answer and the log: they may quote data."""
    problems.log.warning("integrity error (correlation id %s)", correlation_id.get())
    return problems.from_domain_error(Conflict("The change conflicts with stored data."))


def _database_unavailable(exc: BaseException) -> Response:
    problems.log.error(
        "database error %s (correlation id %s)", type(exc).__name__, correlation_id.get()
    )
    response = problems.from_domain_error(
        ServiceUnavailable("The database is unavailable; retry shortly.")
    )
    response.headers["Retry-After"] = "2"
    return response


def _unhandled(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return problems.from_http_exception(exc)
    problems.log_unhandled(exc)
    return problems.internal_error()


# --- probes ------------------------------------------------------------------------------------


def _healthz() -> Response:
    return jsonify(status="ok", service=opora_app().service)


def _readyz() -> tuple[Response, int]:
    from shared.messaging.broker import broker_reachable

    state = opora_app()
    probes: dict[str, Callable[[], bool]] = {
        "database": lambda: database_ready(state.engine),
        "broker": lambda: broker_reachable(state.settings, timeout=2.0),
    }
    results = run_probes(probes)
    ready = all(results.values())
    body = {name: "ok" if ok else "error" for name, ok in results.items()}
    return jsonify(status="ok" if ready else "unavailable", service=state.service, **body), (
        200 if ready else 503
    )


def _swagger_ui_asset(name: str) -> Response:
    from flask import abort, send_from_directory

    if name not in SWAGGER_UI_FILES:
        abort(404)
    return send_from_directory(SWAGGER_UI_DIR, name, max_age=86400)


def _metrics() -> Response:
    payload, content_type = opora_app().metrics.render()
    return Response(payload, content_type=content_type)
