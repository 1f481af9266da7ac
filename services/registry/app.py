"""The registry's app factory."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import Engine

from services.registry.api import families
from services.registry.api_admin import admin
from services.registry.api_cases import cases
from services.registry.models import tables
from shared.config import Settings, load_settings
from shared.http import create_service_app


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Flask:
    return create_service_app(
        "registry",
        settings or load_settings("registry"),
        tables=tables,
        blueprints=[families, cases, admin],
        engine=engine,
    )
