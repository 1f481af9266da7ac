"""Demo data for the embedded mode: a district, its coordinator and four families.

Families are registered through the registry's domain code, so their events flow
to raids and notifications exactly as real ones do.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from shared import db
from shared.config import load_settings

DISTRICT = "Тарногский район"

FAMILIES = [
    {
        "category": "risk_group",
        "address": {
            "region": "Вологодская область",
            "district": DISTRICT,
            "settlement": "с. Тарногский Городок",
            "street": "ул. Советская",
            "house": "12",
            "flat": "3",
            "latitude": 60.5,
            "longitude": 43.58,
        },
        "members": [
            {
                "role": "mother",
                "full_name": "Смирнова Елена Викторовна",
                "birth_date": dt.date(1989, 3, 14),
            },
            {
                "role": "child",
                "full_name": "Смирнов Артём Сергеевич",
                "birth_date": dt.date(2013, 9, 2),
                "school": "Тарногская СОШ, 6 класс",
            },
        ],
    },
    {
        "category": "sop",
        "address": {
            "region": "Вологодская область",
            "district": DISTRICT,
            "settlement": "д. Заречье",
            "street": "ул. Лесная",
            "house": "4",
            "latitude": 60.43,
            "longitude": 43.71,
        },
        "members": [
            {
                "role": "father",
                "full_name": "Кузнецов Андрей Петрович",
                "birth_date": dt.date(1984, 6, 30),
            },
            {
                "role": "child",
                "full_name": "Кузнецова Дарья Андреевна",
                "birth_date": dt.date(2016, 1, 19),
            },
            {
                "role": "child",
                "full_name": "Кузнецов Илья Андреевич",
                "birth_date": dt.date(2019, 11, 5),
            },
        ],
    },
    {
        "category": "tzhs",
        "address": {
            "region": "Вологодская область",
            "district": DISTRICT,
            "settlement": "с. Верховье",
            "street": "ул. Центральная",
            "house": "27",
            "latitude": 60.62,
            "longitude": 43.35,
        },
        "members": [
            {
                "role": "guardian",
                "full_name": "Попова Галина Ивановна",
                "birth_date": dt.date(1961, 8, 8),
            },
            {
                "role": "child",
                "full_name": "Попов Максим Олегович",
                "birth_date": dt.date(2011, 4, 21),
            },
        ],
    },
    {
        "category": "risk_group",
        "address": {
            "region": "Вологодская область",
            "district": DISTRICT,
            "settlement": "п. Илезский",
            "house": "8",
        },
        "members": [
            {
                "role": "mother",
                "full_name": "Васильева Ольга Николаевна",
                "birth_date": dt.date(1995, 12, 1),
            },
            {
                "role": "child",
                "full_name": "Васильева Анна Дмитриевна",
                "birth_date": dt.date(2020, 7, 17),
            },
        ],
    },
]


def seed() -> None:
    """Idempotent: seeds only empty databases."""
    from services.notifications.models import Recipient
    from services.registry.domain import register_family
    from services.registry.models import Family

    notifications = db.make_sessionmaker(
        db.make_engine(load_settings("notifications").database_url)
    )
    with db.transaction(notifications) as session:
        if session.get(Recipient, "demo-coordinator") is None:
            session.add(
                Recipient(
                    person_id="demo-coordinator",
                    agency_id="family-centre",
                    roles=["coordinator"],
                    districts=[DISTRICT],
                    email="coordinator@tarnoga.example",
                    phone="+79110000000",
                )
            )
    registry = db.make_sessionmaker(db.make_engine(load_settings("registry").database_url))
    with db.transaction(registry) as session:
        if session.scalar(select(func.count()).select_from(Family)):
            return
        for family in FAMILIES:
            register_family(session, family)
