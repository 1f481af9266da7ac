"""Headers every answer carries, and the pages shown for errors (never a stack trace).

The Content-Security-Policy allows scripts and styles from the console's own origin only: no
inline ``<script>``, no ``style=`` attributes (tests/console check every template for both).
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Flask, current_app, redirect, render_template, request, session, url_for
from flask.wrappers import Response
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from services.console.clients import ApiError, Forbidden, NotFound, ServiceDown, SignInAgain

log = logging.getLogger("opora.console")


def content_security_policy(form_targets: str = "") -> str:
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            f"form-action 'self'{form_targets}",
        ]
    )


def init_app(app: Flask) -> None:
    oidc = app.extensions["console"].config.oidc
    issuer = urlsplit(oidc.issuer) if oidc else None
    # sign-out is a form whose answer redirects to the provider's end-session page
    policy = content_security_policy(f" {issuer.scheme}://{issuer.netloc}" if issuer else "")

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response

    app.register_error_handler(SignInAgain, _sign_in_again)
    app.register_error_handler(ServiceDown, _service_down)
    app.register_error_handler(Forbidden, _forbidden)
    app.register_error_handler(NotFound, _not_found)
    app.register_error_handler(ApiError, _refused)
    app.register_error_handler(CSRFError, _csrf)
    app.register_error_handler(404, _page_not_found)
    app.register_error_handler(405, _page_not_found)
    app.register_error_handler(Exception, _unhandled)


def _page(status: int, title: str, text: str) -> tuple[str, int]:
    return render_template("error.html", title=title, text=text, status=status), status


def _sign_in_again(_exc: SignInAgain) -> Response:
    session.clear()
    session["notice"] = "expired"
    target = request.full_path.rstrip("?") if request.method == "GET" else "/"
    return redirect(url_for("auth.sign_in", next=target))  # type: ignore[return-value]


def _service_down(exc: ServiceDown) -> tuple[str, int]:
    from services.console.labels import service_label

    log.warning("service %s unavailable: %s", exc.service, exc.reason)
    return _page(
        503,
        _("Служба недоступна"),
        _(
            "%(service)s: служба сейчас не отвечает. Повторите попытку через минуту.",
            service=service_label(exc.service),
        ),
    )


def _forbidden(_exc: Forbidden) -> tuple[str, int]:
    return _page(403, _("Нет доступа"), _("У вас нет доступа к этим данным."))


def _not_found(_exc: NotFound) -> tuple[str, int]:
    return _page(404, _("Не найдено"), _("Такой записи нет или она удалена."))


def _page_not_found(_exc: Exception) -> tuple[str, int]:
    return _page(404, _("Страница не найдена"), _("Проверьте адрес страницы."))


def _refused(exc: ApiError) -> tuple[str, int]:
    return _page(400 if exc.status < 500 else 502, _("Запрос отклонён"), exc.detail or exc.title)


def _csrf(_exc: CSRFError) -> tuple[str, int]:
    return _page(400, _("Форма устарела"), _("Обновите страницу и отправьте форму ещё раз."))


def _unhandled(exc: Exception) -> tuple[str, int] | Response:
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return _page(exc.code or 500, exc.name, exc.description or "")
    current_app.logger.exception("unhandled error on %s", request.endpoint)
    return _page(500, _("Ошибка"), _("Что-то пошло не так. Мы уже знаем об этом."))
