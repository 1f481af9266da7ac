"""Language and formats: Russian first, English second (Flask-Babel); dates ``dd.mm.yyyy`` and
times in the console's time zone; numbers with the language's separators."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal
from flask import Flask, session
from flask_babel import Babel, get_locale

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"


def select_language() -> str:
    chosen = session.get("lang")
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


def init_app(app: Flask, timezone: str) -> None:
    Babel(
        app,
        locale_selector=select_language,
        default_locale=DEFAULT_LANGUAGE,
        default_timezone=timezone,
        default_translation_directories="translations",
    )
    zone = ZoneInfo(timezone)

    def as_date(value: Any) -> str:
        if value in (None, ""):
            return "—"
        if isinstance(value, str):
            value = _parse(value)
        if isinstance(value, dt.datetime):
            value = value.astimezone(zone).date()
        return f"{value:%d.%m.%Y}"

    def as_datetime(value: Any) -> str:
        if value in (None, ""):
            return "—"
        if isinstance(value, str):
            value = _parse(value)
        if isinstance(value, dt.datetime):
            return f"{value.astimezone(zone):%d.%m.%Y %H:%M}"
        return f"{value:%d.%m.%Y}"

    def as_number(value: Any) -> str:
        if value is None:
            return "—"
        return format_decimal(value, locale=str(get_locale() or DEFAULT_LANGUAGE))

    app.jinja_env.filters["date"] = as_date
    app.jinja_env.filters["datetime"] = as_datetime
    app.jinja_env.filters["number"] = as_number
    app.jinja_env.globals["languages"] = LANGUAGES
    app.jinja_env.globals["current_language"] = select_language


def _parse(value: str) -> dt.date | dt.datetime:
    if "T" in value:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return dt.date.fromisoformat(value)
