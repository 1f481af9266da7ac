"""The referrals service's app factory."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import Engine

from services.referrals.api import referrals
from services.referrals.api_directory import agencies, rules
from services.referrals.api_signals import signals
from services.referrals.models import tables
from services.referrals.signals import SignalRules
from shared.config import Settings, load_settings
from shared.http import create_service_app


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Flask:
    SignalRules.from_env()  # a wrong SLA setting stops the start, not a request
    return create_service_app(
        "referrals",
        settings or load_settings("referrals"),
        tables=tables,
        blueprints=[agencies, rules, referrals, signals],
        engine=engine,
    )
