"""One blueprint per area of the console (../shared/UI.md): a new screen goes in its area's
module, or a new module listed here."""

from __future__ import annotations

from services.console.views.access import access
from services.console.views.admin import admin
from services.console.views.approvals import approvals
from services.console.views.auth import auth
from services.console.views.cases import cases
from services.console.views.families import families
from services.console.views.family_card import family_card
from services.console.views.family_intakes import family_intakes
from services.console.views.family_new import family_new
from services.console.views.home import home
from services.console.views.links import links
from services.console.views.raids import raids
from services.console.views.referrals import referrals
from services.console.views.signals import signals
from services.console.views.statistics import statistics

BLUEPRINTS = (
    auth,
    home,
    cases,
    approvals,
    access,
    families,
    family_new,
    family_intakes,
    family_card,
    links,
    raids,
    referrals,
    signals,
    statistics,
    admin,
)
