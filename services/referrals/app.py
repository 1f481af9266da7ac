"""The referrals service's app factory."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import Engine

from services.referrals.models import tables
from shared.config import Settings, load_settings
from shared.http import create_service_app


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Flask:
    return create_service_app(
        "referrals",
        settings or load_settings("referrals"),
        tables=tables,
        blueprints=[],
        engine=engine,
    )
