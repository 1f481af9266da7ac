"""Helpers of the registry tests: a SQLite session for domain tests, payloads, the outbox."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry.models import ASSESSMENT_DOMAINS, Base, tables
from shared import db

TODAY = dt.datetime.now(dt.UTC).date()
ALL_DOMAINS = ASSESSMENT_DOMAINS


def sqlite_session(tmp_path: Path) -> Session:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    Base.metadata.create_all(engine)
    return db.make_sessionmaker(engine)()


def family_data(
    surname: str = "Иванова",
    child: str = "Анна Ивановна",
    mother: str = "Мария Петровна",
    *,
    district: str = "Тарногский район",
    settlement: str = "с. Тарногский Городок",
    street: str | None = "ул. Советская",
    house: str | None = "1",
    mother_born: dt.date | None = dt.date(1990, 5, 1),
    child_born: dt.date | None = dt.date(2015, 2, 3),
    category: str = "risk_group",
    child_surname: str | None = None,
) -> dict[str, Any]:
    return {
        "category": category,
        "address": {
            "region": "Вологодская область",
            "district": district,
            "settlement": settlement,
            "street": street,
            "house": house,
        },
        "members": [
            {"role": "mother", "full_name": f"{surname} {mother}", "birth_date": mother_born},
            {
                "role": "child",
                "full_name": f"{child_surname or surname} {child}",
                "birth_date": child_born,
                "school": "Тарногская СОШ",
                "school_class": "3Б",
            },
        ],
        "contacts": [
            {"kind": "phone", "value": "+7 911 000-00-00", "consent": True, "consent_on": TODAY}
        ],
    }


def outbox(session: Session, event_type: str | None = None) -> list[dict[str, Any]]:
    """Staged events (envelopes), oldest first, optionally of one type."""
    rows = session.execute(select(tables.outbox.c.body).order_by(tables.outbox.c.id)).scalars()
    envelopes = [json.loads(body) for body in rows]
    return [e for e in envelopes if event_type is None or e["type"] == event_type]


def scores(value: int = 3, **overrides: int) -> dict[str, int]:
    return {**dict.fromkeys(ALL_DOMAINS, value), **overrides}
