"""The notifications service's app factory."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import Engine

from services.notifications.api import (
    bounces_api,
    messages,
    prefs_api,
    receipts_api,
    rules_api,
    short_links,
)
from services.notifications.api_templates import templates
from services.notifications.models import tables
from shared.config import Settings, load_settings
from shared.http import create_service_app


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Flask:
    return create_service_app(
        "notifications",
        settings or load_settings("notifications"),
        tables=tables,
        blueprints=[
            messages,
            prefs_api,
            receipts_api,
            bounces_api,
            short_links,
            rules_api,
            templates,
        ],
        engine=engine,
    )
