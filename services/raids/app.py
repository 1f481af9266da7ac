"""The raids service's app factory."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import Engine

from services.raids.api import families, raids
from services.raids.api_people import people, raid_series
from services.raids.api_visits import visits
from services.raids.domain import RaidRules
from services.raids.models import tables
from shared.config import Settings, load_settings
from shared.http import create_service_app


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Flask:
    settings = settings or load_settings("raids")
    RaidRules.from_env(settings.options)  # a wrong rule setting stops the start, not a request
    return create_service_app(
        "raids",
        settings,
        tables=tables,
        blueprints=[families, raids, visits, people, raid_series],
        engine=engine,
    )
