"""The main menu, per role: each area's entry appears for the roles that work there.

Only areas the console serves are listed (a test holds every entry to a route): administration joins
when its pages do."""

from __future__ import annotations

from dataclasses import dataclass

from flask import request
from flask_babel import lazy_gettext as _l

from services.console.people import Person
from shared.auth.roles import ADMIN, AGENCY_STAFF, AUDITOR, COORDINATOR, LEAD_SPECIALIST

STAFF = (COORDINATOR, LEAD_SPECIALIST, AGENCY_STAFF)

AREAS: tuple[tuple[str, object, tuple[str, ...]], ...] = (
    ("/", _l("Главная"), (*STAFF, AUDITOR, ADMIN)),
    ("/families", _l("Семьи"), (COORDINATOR, LEAD_SPECIALIST, AGENCY_STAFF, AUDITOR, ADMIN)),
    ("/signals", _l("Сигналы"), (COORDINATOR, AGENCY_STAFF, ADMIN)),
    ("/referrals", _l("Направления"), (*STAFF, ADMIN)),
    ("/raids", _l("Рейды"), (*STAFF, ADMIN)),
    ("/approvals", _l("Утверждения"), (COORDINATOR,)),
    ("/access/grants", _l("Экстренный доступ"), (COORDINATOR,)),
    ("/statistics", _l("Статистика"), (COORDINATOR, AUDITOR, ADMIN)),
    ("/audit", _l("Журнал доступа"), (AUDITOR, ADMIN)),
)


@dataclass(frozen=True)
class NavItem:
    url: str
    title: str
    current: bool


def navigation(person: Person) -> list[NavItem]:
    path = request.path
    return [
        NavItem(url, str(title), path == url if url == "/" else path.startswith(url))
        for url, title, roles in AREAS
        if person.has_role(*roles)
    ]
