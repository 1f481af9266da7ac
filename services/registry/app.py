"""The registry's app factory."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import Engine

from services.registry import access
from services.registry.api import families
from services.registry.api_access import emergency
from services.registry.api_admin import admin
from services.registry.api_cases import cases
from services.registry.api_intakes import intakes
from services.registry.api_workspace import workspace
from services.registry.models import tables
from shared.config import Settings, load_settings
from shared.http import create_service_app


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Flask:
    settings = settings or load_settings("registry")
    access.glass_max_minutes(settings.options)  # a wrong value stops the start, not a request
    return create_service_app(
        "registry",
        settings,
        tables=tables,
        blueprints=[families, emergency, cases, workspace, intakes, admin],
        engine=engine,
    )
