"""The referrals service's app factory."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import Engine

from services.referrals.api import referrals
from services.referrals.api_directory import agencies, rules
from services.referrals.api_fhir import fhir_api
from services.referrals.api_links import respond
from services.referrals.api_signals import signals
from services.referrals.api_sla import overdue
from services.referrals.api_webhooks import hooks
from services.referrals.links import link_days
from services.referrals.models import tables
from services.referrals.signals import SignalRules
from services.referrals.sla import SlaRules
from services.referrals.webhook_delivery import DeliveryPolicy
from shared.config import Settings, load_settings
from shared.http import create_service_app


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Flask:
    settings = settings or load_settings("referrals")
    # A wrong setting stops the start, not a request.
    SignalRules.from_env(settings.options)
    SlaRules.from_env(settings.options)
    SlaRules.current()
    DeliveryPolicy.from_env(settings.options)
    link_days(settings.options)
    return create_service_app(
        "referrals",
        settings,
        tables=tables,
        blueprints=[agencies, rules, overdue, referrals, respond, hooks, signals, fhir_api],
        engine=engine,
    )
