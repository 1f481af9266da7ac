"""Demo data for the embedded mode: one district, told as README's walkthrough tells it.

The district's family-support centre (a coordinator and a lead specialist), the school, the
police juvenile unit (PDN), a charity without a system of its own and the children's clinic,
each with its staff in the agency directory; who routes which service where; the API keys of
the three agency systems; and three families already in the data bank, the neighbours a raid
visits beside the family whose story the walkthrough follows (that family arrives by the
school's signal, so it is not seeded).

Everything goes through the services' own domain code, so the events flow to the other
services as real ones do: notifications learns the staff from the directory, raids learns the
families from the registry. The end-to-end scenario (tests/scenario) seeds with this too, so
the demo and the tested story cannot drift apart.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import db
from shared.config import load_settings

REGION = "Вологодская область"
DISTRICT = "Тарногский район"
CENTRE = {"name": "с. Тарногский Городок, КЦСОН", "latitude": 60.4985, "longitude": 43.5890}
KEYS_FILE = "demo-keys.txt"

FAMILY_CENTRE = "family-centre"
SCHOOL = "tarnoga-school"
POLICE = "tarnoga-pdn"
CHARITY = "good-hands"
CLINIC = "tarnoga-clinic"

# A measure kind of this district's own, added to the catalogue as an admin would.
PDN_CHECK = {
    "code": "pdn_check",
    "title_ru": "Проверка инспектором ПДН",
    "title_en": "A check by the police juvenile inspector",
}


def _contact(person_id: str, name: str, role: str, email: str, phone: str) -> dict[str, Any]:
    return {"person_id": person_id, "name": name, "role": role, "email": email, "phone": phone}


AGENCIES: list[dict[str, Any]] = [
    {
        "id": FAMILY_CENTRE,
        "name": "КЦСОН Тарногского района, отделение помощи семье и детям",
        "kind": "family_centre",
        "services": ["counselling", "patronage_visit"],
        "email": "kcson@tarnoga.example",
        "contacts": [
            _contact(
                "demo-coordinator",
                "Координатор (демо)",
                "coordinator",
                "coordinator@tarnoga.example",
                "+79110000001",
            ),
            _contact(
                "demo-specialist",
                "Ведущий специалист (демо)",
                "lead_specialist",
                "specialist@tarnoga.example",
                "+79110000002",
            ),
        ],
    },
    {
        "id": SCHOOL,
        "name": "Тарногская средняя школа",
        "kind": "school",
        "services": ["school_check"],
        "email": "school@tarnoga.example",
        "contacts": [
            _contact(
                "demo-pedagogue",
                "Социальный педагог (демо)",
                "social_pedagogue",
                "pedagogue@tarnoga.example",
                "+79110000003",
            )
        ],
    },
    {
        "id": POLICE,
        "name": "ОМВД по Тарногскому району, ПДН",
        "kind": "police_pdn",
        "services": [PDN_CHECK["code"]],
        "email": "pdn@tarnoga.example",
        "contacts": [
            _contact(
                "demo-inspector",
                "Инспектор ПДН (демо)",
                "inspector",
                "inspector@tarnoga.example",
                "+79110000004",
            )
        ],
    },
    {
        "id": CHARITY,
        "name": "Благотворительный фонд «Добрые руки»",
        "kind": "charity",
        "services": ["material_aid"],
        "delivery": "link",
        "contacts": [
            _contact(
                "demo-volunteer",
                "Волонтёр фонда (демо)",
                "head",
                "volunteer@good-hands.example",
                "+79110000005",
            )
        ],
    },
    {
        "id": CLINIC,
        "name": "Тарногская ЦРБ, детская поликлиника",
        "kind": "health",
        "services": ["medical_examination"],
        "email": "clinic@tarnoga.example",
        "contacts": [
            _contact(
                "demo-doctor",
                "Врач-педиатр (демо)",
                "referrals",
                "doctor@tarnoga.example",
                "+79110000006",
            )
        ],
    },
]

ROUTING = {"material_aid": CHARITY, "medical_examination": CLINIC, PDN_CHECK["code"]: POLICE}

# The agency systems that talk to Opora machine to machine: variable name -> (agency, system).
API_KEYS = {
    "SCHOOL_KEY": (SCHOOL, "АИС школы"),
    "POLICE_KEY": (POLICE, "АИС ПДН"),
    "CLINIC_KEY": (CLINIC, "МИС поликлиники"),
}


def _address(settlement: str, street: str, house: str, lat: float, lon: float) -> dict[str, Any]:
    return {
        "region": REGION,
        "district": DISTRICT,
        "settlement": settlement,
        "street": street,
        "house": house,
        "latitude": lat,
        "longitude": lon,
    }


FAMILIES: list[dict[str, Any]] = [
    {
        "category": "risk_group",
        "address": _address("с. Тарногский Городок", "ул. Советская", "12", 60.5000, 43.5800),
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
        "address": _address("д. Заречье", "ул. Лесная", "4", 60.4300, 43.7100),
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
        "address": _address("с. Верховье", "ул. Центральная", "27", 60.6200, 43.3500),
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
]


def seed(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Seed empty databases (each part only where it is still empty, so a restart adds nothing).

    The police system takes its referrals over AMQP where the broker is RabbitMQ, else it polls
    the HTTP API. API keys are made in the embedded mode only, written to
    ``OPORA_DATA_DIR/demo-keys.txt`` as shell assignments (``. var/demo-keys.txt``) and
    returned; a production system gets its keys from an admin, never from a demo.
    """
    env = dict(os.environ if env is None else env)
    snapshots = _seed_directory(env)
    _seed_recipients(env, snapshots)
    _seed_registry(env, snapshots or _directory_snapshots(env))
    settings = load_settings("referrals", env=env)
    return _seed_keys(env, settings.data_dir / KEYS_FILE) if settings.embedded else {}


@contextlib.contextmanager
def _transaction(service: str, env: Mapping[str, str]) -> Iterator[Session]:
    """One transaction on the service's database, with an engine of its own that goes after."""
    settings = load_settings(service, env=dict(env), database_only=True)
    engine = db.make_engine(settings.database_url)
    try:
        with db.transaction(db.make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _seed_directory(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """The agencies, their staff and the routing rules; returns the agencies' snapshots (as
    the directory's events carry them), none when the directory was seeded before."""
    from services.referrals import directory
    from services.referrals.models import Agency

    over_amqp = load_settings("referrals", env=dict(env)).broker_url.startswith("amqp")
    now = dt.datetime.now(dt.UTC)
    with _transaction("referrals", env) as session:
        if session.scalar(select(func.count()).select_from(Agency)):
            return []
        created = []
        for agency in AGENCIES:
            delivery = agency.get("delivery", "api")
            if agency["id"] == POLICE and over_amqp:
                delivery = "amqp"
            created.append(
                directory.create_agency(
                    session, {**agency, "districts": [DISTRICT], "delivery": delivery}, now
                )
            )
        session.flush()
        snapshots = [directory.agency_snapshot(agency) for agency in created]
        for service_code, agency_id in ROUTING.items():
            directory.add_rule(
                session,
                {"service_code": service_code, "district": DISTRICT, "agency_id": agency_id},
                "demo",
                now,
            )
    return snapshots


def _directory_snapshots(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every agency of a directory seeded before: a data folder from before the registry kept
    the agencies' kinds learns them at the next start."""
    from services.referrals import directory
    from services.referrals.models import Agency

    with _transaction("referrals", env) as session:
        return [directory.agency_snapshot(a) for a in session.scalars(select(Agency))]


def _seed_recipients(env: Mapping[str, str], snapshots: list[dict[str, Any]]) -> None:
    """Notifications learns the staff from the directory's events. The demo hands it the same
    snapshots at once, so the demo families' emails find their coordinator however the two
    services' events interleave at start-up; the events, when they come, change nothing."""
    from services.notifications import readmodels
    from shared.events import Event

    now = dt.datetime.now(dt.UTC)
    events = [
        Event(str(uuid.uuid4()), "referrals.agency.created", 1, now, "referrals", "demo", None, s)
        for s in snapshots
    ]
    if events:
        with _transaction("notifications", env) as session:
            readmodels.remember_agencies(session, events)


def _seed_registry(env: Mapping[str, str], snapshots: list[dict[str, Any]]) -> None:
    """The demo families and the catalogue; and the agencies' kinds, which the registry learns
    from the directory's events: handed over at once, like notifications' recipients, so the
    family's consent covers the police however the services' start-up interleaves."""
    from services.registry import directory, domain_plan
    from services.registry.domain import register_family
    from services.registry.models import CatalogueEntry, Family

    with _transaction("registry", env) as session:
        for snapshot in snapshots:
            directory.remember_agency(session, snapshot)
        if session.get(CatalogueEntry, ("measure_kind", PDN_CHECK["code"])) is None:
            domain_plan.add_catalogue_entry(session, "measure_kind", dict(PDN_CHECK), by="demo")
        if not session.scalar(select(func.count()).select_from(Family)):
            for family in FAMILIES:
                register_family(session, family, by="demo")


def _seed_keys(env: Mapping[str, str], path: Path) -> dict[str, str]:
    """A key per agency system, once: the file is the only place the keys can be read again."""
    from services.referrals.models import tables
    from shared.auth.apikeys import create_api_key

    if path.exists():
        return read_keys(path)
    keys: dict[str, str] = {}
    with _transaction("referrals", env) as session:
        for variable, (agency_id, system) in API_KEYS.items():
            keys[variable] = create_api_key(session, tables, agency_id=agency_id, name=system)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text("".join(f"{name}={key}\n" for name, key in keys.items()))
    tmp.chmod(0o600)
    os.replace(tmp, path)
    return keys


def read_keys(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)
