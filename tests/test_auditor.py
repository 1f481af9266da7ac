"""The auditor reads and never acts (issue 12, point 2), over every service's own OpenAPI document.

A world on the embedded set-up (SQLite, the file transport, the four apps): a family with a case
and an agreement that shares with charities, a referral to a charity that has no system (its
contact answers by signed link, by email and SMS), a raid with invitations (calendar files) and
the participants' calendar feeds. Then, with an auditor's token:

- every write (POST, PUT, PATCH, DELETE) of every service answers 403, with the world's own ids
  in the path; a write opened by a signed link instead of a login answers 401 to a forged one;
- every GET of every service is read, and every link of this system found in what came back
  (bodies and Location headers) is followed, GET and POST with accept / reject / start /
  complete: none acts. The referral is still ``requested`` afterwards and the messages that
  carry the charity's link show only the marker where it stood.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import System, family_payload
from sqlalchemy import select

from services.notifications import capabilities
from services.notifications.models import Message
from services.raids.domain import remember_family
from services.referrals.models import Referral
from shared.config import SERVICES
from shared.db import utcnow

pytestmark = pytest.mark.embedded

PUBLIC = "https://opora.test"
AUDITOR = "auditor-1"
WRITES = ("post", "put", "patch", "delete")
DISTRICT = "Тарногский район"
TODAY = dt.date.today()
URL = re.compile(re.escape(PUBLIC) + r"/[^\s\"'<>\\)\]]*")
CHARITY = {
    "id": "charity-1", "name": "Фонд «Добрые руки»", "kind": "charity", "services": ["food_aid"],
    "districts": [DISTRICT], "delivery": "link", "email": "fund@charity.test",
    "contacts": [{"person_id": "volunteer-1", "name": "Волонтёр", "role": "head",
                  "email": "volunteer@charity.test", "phone": "+79110000005"}],
}  # fmt: skip
PARTICIPANTS = [
    {"person_id": "p-pdn", "agency_id": "pdn-1", "agency_kind": "police_pdn",
     "display_name": "Инспектор", "email": "pdn@pdn.test", "role": "inspector"},
    {"person_id": "p-soc", "agency_id": "centre-1", "agency_kind": "family_centre",
     "display_name": "Специалист", "email": "soc@centre.test", "role": "lead"},
]  # fmt: skip
ANSWERS = (
    {"action": "accept"},
    {"action": "reject", "reason": "не наш профиль"},
    {"action": "start"},
    {"action": "complete", "outcome": "помогли"},
)


class World:
    def __init__(self, system: System) -> None:
        self.system = system
        self.ids: dict[str, list[str]] = {}

    def client(self, service: str, role: str | None = None, subject: str | None = None) -> Any:
        c = self.system.app(service).test_client()
        if role:
            token = self.system.token(role, subject=subject or f"test-{role}")
            c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return c

    def auditor(self, service: str) -> Any:
        return self.client(service, "auditor", AUDITOR)

    def spread(self) -> None:
        """Every service's events to every other, twice over (answers cause events too)."""
        for _ in range(2):
            for service in SERVICES:
                self.system.relay(service)
            for service in SERVICES:
                self.system.consume(service, idle=0.2)

    def referral_status(self) -> str:
        with self.system.session("referrals") as session:
            found = session.get(Referral, self.ids["referral_id"])
            assert found is not None
            return found.status


def _ok(response: Any, *codes: int) -> Any:
    assert response.status_code in codes, (response.status_code, response.get_data(as_text=True))
    return response.get_json()


def build(system: System) -> World:
    world = World(system)
    lead = world.client("registry", "lead_specialist")
    family = _ok(lead.post("/families", json=family_payload("Смирнова")), 201)
    case = _ok(lead.get(f"/families/{family['id']}/cases"), 200)[0]
    agreement = {
        "signed_on": TODAY.isoformat(),
        "valid_until": (TODAY + dt.timedelta(days=365)).isoformat(),
        "consent_data_processing": True,
        "share_with": ["charity", "school"],
    }
    _ok(lead.post(f"/cases/{case['id']}/agreements", json=agreement), 201)
    _ok(world.client("referrals", "admin").post("/agencies", json=CHARITY), 201)
    world.spread()
    referral = {
        "family_id": family["id"], "family_number": family["number"], "district": DISTRICT,
        "service_code": "food_aid", "agency_id": CHARITY["id"], "reason": "продуктовый набор",
        "urgency": "urgent", "deadline": (TODAY + dt.timedelta(days=30)).isoformat(),
        "contact": {"person_id": "test-lead_specialist", "name": "Специалист"},
    }  # fmt: skip
    made = _ok(world.client("referrals", "lead_specialist").post("/referrals", json=referral), 201)
    assert made["status"] == "requested", made
    with system.session("raids") as session, session.begin():
        for n, settlement in enumerate(("с. Верховье", "д. Заречье")):
            remember_family(
                session,
                {
                    "family_id": f"f-{n}", "number": f"F-{n}000", "category": "risk_group",
                    "display_name": f"Семья {n}", "family_version": 1,
                    "address": {"region": "Вологодская область", "district": DISTRICT,
                                "settlement": settlement, "street": "ул. Лесная", "house": "4",
                                "latitude": 60.5 + n / 10, "longitude": 43.6},
                },
                utcnow(),
            )  # fmt: skip
    raid = {
        "title": "Рейд", "purpose": "planned_check", "district": DISTRICT,
        "date": (TODAY + dt.timedelta(days=10)).isoformat(), "start_time": "09:00",
        "end_time": "17:00", "organizer_email": "coordinator@district.test",
        "centre": {"name": "с. Тарногский Городок", "latitude": 60.5, "longitude": 43.58},
        "family_ids": ["f-0", "f-1"], "participants": PARTICIPANTS,
    }  # fmt: skip
    scheduled = _ok(world.client("raids", "coordinator").post("/raids", json=raid), 201)
    world.spread()
    with system.session("notifications") as session:
        charity_messages = session.scalars(
            select(Message).where(Message.recipient_id == "volunteer-1")
        ).all()
        assert {m.channel for m in charity_messages} == {"email", "sms"}
        assert all(m.sealed_links for m in charity_messages)
        invitations = session.scalars(
            select(Message.id).where(Message.source_event_type == "raids.participant.invited")
        ).all()
        assert invitations, "the raid's invitations were not made"
        message_ids = [m.id for m in charity_messages] + list(invitations)
    world.ids.update(
        family_id=[family["id"]], case_id=[case["id"]], referral_id=[made["id"]],
        agency_id=[CHARITY["id"]], raid_id=[scheduled["id"]],
        participant_id=[p["id"] for p in scheduled["participants"]],
        person_id=[AUDITOR, "volunteer-1", "p-pdn"], message_id=message_ids,
        key=["referral.received", "raid.invitation"], channel=["email", "sms"], language=["ru"],
        provider=["smsc"], name=["measure_kinds"], version=["1"],
    )  # fmt: skip
    return world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from kombu.transport.filesystem import Transport

    from shared import db as database

    folder = tmp_path_factory.mktemp("auditor")
    Transport.global_state.clear()  # as conftest's embedded_system: a folder of its own
    urls = {s: f"sqlite:///{folder / (s + '.db')}" for s in SERVICES}
    for service, url in urls.items():
        database.upgrade(service, url)
    system = System(urls, "filesystem://", "opora", str(folder))
    system.declare()
    try:
        yield build(system)
    finally:
        system.close()


def operations(world: World, methods: tuple[str, ...]) -> list[tuple[str, str, str, Any]]:
    """(service, METHOD, path template, operation) of every service's OpenAPI document."""
    found = []
    for service in SERVICES:
        spec = _ok(world.client(service).get("/openapi.json"), 200)
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                if method in methods:
                    found.append((service, method.upper(), path, op))
    return found


def concrete(world: World, path: str) -> str:
    """The path with the world's first ids (an unknown parameter gets a fresh UUID)."""
    return next(every_concrete(world, path))


def every_concrete(world: World, path: str, most: int = 60) -> Iterator[str]:
    """The path with every combination of the world's ids (at most ``most``)."""
    names = re.findall(r"{(\w+)}", path)
    choices = [world.ids.get(name) or [str(uuid.uuid4())] for name in names]
    for values in itertools.islice(itertools.product(*choices), most):
        filled = path
        for name, value in zip(names, values, strict=True):
            filled = filled.replace("{" + name + "}", value, 1)
        yield filled


def by_link(op: Any) -> bool:
    return op.get("security") == [{"linkToken": []}]


def test_every_write_of_every_service_refuses_the_auditor(world: World) -> None:
    writes = operations(world, WRITES)
    assert len(writes) >= 70, len(writes)  # the documents list them all
    before = world.referral_status()
    wrong = []
    for service, method, template, op in writes:
        path = concrete(world, template)
        client = world.auditor(service)
        if by_link(op):  # no login here: the signed link is the key, and a forged one opens nothing
            path += ("&" if "?" in path else "?") + "token=" + "forged.token-" * 3
            response = client.open(path, method=method, json={"action": "accept"})
            expected = 401
        else:
            response = client.open(path, method=method, json={})
            expected = 403
        if response.status_code != expected:
            wrong.append((service, method, template, response.status_code))
    assert not wrong, wrong
    assert world.referral_status() == before == "requested"


def _texts(response: Any) -> list[str]:
    found = [response.headers.get("Location", "")]
    found.append(response.get_data().decode("utf-8", "replace"))
    return found


def test_no_link_an_auditor_can_read_acts(world: World) -> None:
    before = world.referral_status()
    seen: list[str] = []
    reads = operations(world, ("get",))
    assert len(reads) >= 50, len(reads)
    for service, _, template, op in reads:
        if by_link(op):
            continue  # opened by a link, not by the auditor's login: followed below if found
        for path in every_concrete(world, template):
            response = world.auditor(service).get(path)
            assert response.status_code < 500, (path, response.status_code)
            seen += _texts(response)
    # a participant's calendar link is minted for them (or their coordinator), not for an auditor
    assert world.auditor("raids").get("/people/p-pdn/feed-url").status_code == 403
    text = "\n".join(seen)
    # the charity's messages were read, with the marker where its link stood
    assert capabilities.MARKER in text
    assert "/respond?token=" not in text and "token=" not in text
    links = sorted(set(URL.findall(text)))
    assert links, "no link found in what the auditor read"
    followed = 0
    for link in links:
        followed += follow(world, link, hops=2)
    assert followed >= len(links)
    assert world.referral_status() == before == "requested"


def _service_of(world: World, path: str) -> str | None:
    for service in SERVICES:
        adapter = world.system.app(service).url_map.bind("opora.test")
        try:
            adapter.match(path, method="GET")
            return service
        except Exception:
            continue
    return None


def follow(world: World, link: str, hops: int) -> int:
    """Open ``link`` as anyone would (no login) and as the auditor, GET and POST with every
    answer; a redirect to another link of ours is followed too. Returns how many were opened."""
    parts = urlsplit(link)
    service = _service_of(world, parts.path)
    if service is None:  # a console page: it asks for a login and calls these same APIs
        return 1
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    for client in (world.client(service), world.auditor(service)):
        opened = client.get(target)
        assert opened.status_code < 500, (link, opened.status_code)
        location = opened.headers.get("Location", "")
        if hops and opened.status_code in (301, 302, 303, 307, 308) and location.startswith(PUBLIC):
            follow(world, location, hops - 1)
        for answer in ANSWERS:
            acted = client.post(target, json=answer)
            assert not 200 <= acted.status_code < 300, (link, answer, acted.status_code)
    return 1
