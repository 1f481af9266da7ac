"""Every GET of every service that answers with a family's data leaves a read entry for that
family in that service's own ``GET /audit`` (issue 12, point 6).

A family's story is built over the services' own APIs and events: a case with an agreement, a
plan measure for the clinic that becomes a referral, a plan approval asked for, a school's
emergency access, two signals (one accepted for the family, one attached to it from the
coordinator's intakes), a raid that visits it, and the messages the events made. Then every
GET operation of every service's ``/openapi.json`` is called with the story's ids and a
correlation id of its own, and ``GET /audit?family_id=..&correlation_id=..`` of the same
service must find an entry. Operations that return no family's data are named below with the
reason; a new GET that is in neither list is walked, so it must audit or be named here.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import System, add_coordinator, family_payload
from sqlalchemy import select, update

from services.notifications.models import Message
from services.referrals.models import Referral
from services.registry.models import Measure
from shared.config import SERVICES

DISTRICT = "Тарногский район"
TODAY = dt.date.today()

# GETs that answer with no family's personal data, and why; everything else is walked.
NO_FAMILY_DATA: dict[tuple[str, str], str] = {
    ("registry", "/audit"): "the trail itself: who read what, never the data",
    ("registry", "/statistics"): "counts per district and year, no family",
    ("registry", "/measures/overdue/summary"): "counts per district or lead specialist",
    ("registry", "/catalogues/{name}"): "codes and titles of problems, strengths, measures",
    ("registry", "/break-glass/limits"): "how long an emergency access may last (settings)",
    ("referrals", "/audit"): "the trail itself",
    ("referrals", "/agencies"): "the agency directory: agencies and their staff",
    ("referrals", "/agencies/{agency_id}"): "the agency directory",
    ("referrals", "/agencies/{agency_id}/api-keys"): "key ids and names of agency systems",
    ("referrals", "/routing-rules"): "which agency takes which service where",
    ("referrals", "/referrals/{referral_id}/respond-link"): "a signed link, no data (the "
    "walk follows it: GET /referrals/{referral_id}/respond is audited)",
    ("referrals", "/agencies/{agency_id}/webhooks"): "an agency's webhook subscriptions",
    ("referrals", "/agencies/{agency_id}/webhooks/{webhook_id}"): "one subscription",
    ("referrals", "/agencies/{agency_id}/webhooks/{webhook_id}/deliveries"): "delivery log: "
    "event ids, status codes, attempts",
    ("referrals", "/agencies/{agency_id}/webhook-deliveries/{delivery_id}"): "one delivery",
    ("raids", "/audit"): "the trail itself",
    ("raids", "/raids"): "raid summaries: title, district, times, how many families",
    ("raids", "/raids/{raid_id}.ics"): "the raid's calendar: no family in it by design",
    ("raids", "/people/{person_id}/raids.ics"): "a staff member's calendar feed, no family",
    ("raids", "/people/{person_id}/feed-url"): "a signed link to that feed",
    ("raids", "/people/{person_id}/calendar.ics"): "the feed by its link, no family",
    ("raids", "/people/{person_id}/absences"): "a staff member's absences",
    ("raids", "/series"): "series of raids: raid summaries only",
    ("raids", "/series/{series_id}"): "one series: raid summaries only",
    ("notifications", "/audit"): "the trail itself",
    ("notifications", "/preferences/me"): "the caller's own notification preferences",
    ("notifications", "/preferences/{person_id}"): "a staff member's preferences",
    ("notifications", "/receipts/{provider}/url"): "the gateway's signed callback URL",
    ("notifications", "/bounces/url"): "the mail system's signed DSN URL",
    ("notifications", "/r/{code}"): "a redirect to a console page that asks for a login",
    ("notifications", "/rules"): "which event notifies whom",
    ("notifications", "/templates"): "template keys and versions",
    ("notifications", "/templates/{key}/{channel}/{language}"): "one template's versions",
}

# Query arguments a list needs for the story's family to be on the page it answers.
QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("registry", "/intakes"): {"state": "attached"},
    ("registry", "/families/export"): {"format": "csv"},
    ("registry", "/break-glass"): {"family_id": "{family_id}"},
    ("referrals", "/referrals"): {"family_id": "{family_id}"},
    ("notifications", "/messages"): {"family_id": "{family_id}"},
}


class Story:
    def __init__(self, system: System) -> None:
        self.system = system
        self.ids: dict[str, str] = {}

    def client(self, service: str, role: str, subject: str | None = None, **kw: Any) -> Any:
        c = self.system.app(service).test_client()
        token = self.system.token(role, subject=subject or f"test-{role}", **kw)
        c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return c

    def spread(self) -> None:
        """Every service's events to every other, twice over (answers cause events too)."""
        for _ in range(2):
            for service in SERVICES:
                self.system.relay(service)
            for service in SERVICES:
                self.system.consume(service, idle=0.2)


def _ok(response: Any, *codes: int) -> Any:
    assert response.status_code in codes, (response.status_code, response.get_data(as_text=True))
    return response.get_json()


AGENCIES = [
    {"id": "clinic-1", "name": "Детская поликлиника", "kind": "health", "delivery": "link",
     "services": ["medical_examination"], "districts": [DISTRICT], "email": "clinic@clinic.test",
     "contacts": [{"person_id": "doctor-1", "name": "Педиатр", "role": "doctor",
                   "email": "doctor@clinic.test", "phone": "+79110000007"}]},
    {"id": "school-1", "name": "Тарногская школа", "kind": "school", "districts": [DISTRICT],
     "email": "school@school.test",
     "contacts": [{"person_id": "teacher-1", "name": "Педагог", "role": "social_pedagogue",
                   "email": "teacher@school.test", "phone": "+79110000008"}]},
]  # fmt: skip
PARTICIPANTS = [
    {"person_id": "p-pdn", "agency_id": "pdn-1", "agency_kind": "police_pdn",
     "display_name": "Инспектор", "email": "pdn@pdn.test", "role": "inspector"},
    {"person_id": "p-soc", "agency_id": "centre-1", "agency_kind": "family_centre",
     "display_name": "Специалист", "email": "soc@centre.test", "role": "lead"},
]  # fmt: skip


def build(system: System) -> Story:
    story = Story(system)
    add_coordinator(system, DISTRICT)
    admin = story.client("referrals", "admin")
    for agency in AGENCIES:
        _ok(admin.post("/agencies", json=agency), 201)
    lead = story.client("registry", "lead_specialist")
    family = _ok(lead.post("/families", json=family_payload("Смирнова")), 201)
    case = _ok(lead.get(f"/families/{family['id']}/cases"), 200)[0]
    agreement = {
        "signed_on": TODAY.isoformat(),
        "valid_until": (TODAY + dt.timedelta(days=365)).isoformat(),
        "consent_data_processing": True,
        "share_with": ["health", "school"],
    }
    _ok(lead.post(f"/cases/{case['id']}/agreements", json=agreement), 201)
    story.spread()
    measure = {
        "title": "Медосмотр детей", "kind": "medical_examination", "agency_id": "clinic-1",
        "deadline": (TODAY + dt.timedelta(days=14)).isoformat(),
    }  # fmt: skip
    measure_id = _ok(lead.post(f"/cases/{case['id']}/measures", json=measure), 201)["id"]
    _ok(lead.post(f"/cases/{case['id']}/approvals", json={"kind": "plan"}), 201)
    teacher = story.client("registry", "agency_staff", "teacher-1", agency="school-1")
    _ok(
        teacher.post(
            f"/families/{family['id']}/break-glass",
            json={"reason": "ребёнок один дома, мать не отвечает"},
        ),
        201,
    )
    story.spread()
    signal_ids = _signals(story, family["id"])
    story.spread()
    intake = _ok(story.client("registry", "coordinator").get("/intakes"), 200)["items"][0]
    _ok(
        story.client("registry", "coordinator").post(
            f"/intakes/{intake['id']}/resolve", json={"family_id": family["id"]}
        ),
        200,
    )
    raid_id, visit_id = _raid(story, family["id"])
    story.spread()
    with system.session("referrals") as session:
        referral = session.scalars(select(Referral).where(Referral.family_id == family["id"])).one()
    # Time cannot pass in a test: the measure's deadline and the referral's acknowledgement
    # fall due by writing them back a month, so that the overdue lists show them.
    month_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    with system.session("registry") as session, session.begin():
        session.execute(
            update(Measure).where(Measure.id == measure_id).values(deadline=month_ago.date())
        )
    with system.session("referrals") as session, session.begin():
        session.execute(
            update(Referral)
            .where(Referral.id == referral.id)
            .values(acknowledge_due_at=month_ago, due_at=month_ago)
        )
    with system.session("notifications") as session:
        message_id = session.scalars(
            select(Message.id).where(Message.family_id == family["id"]).order_by(Message.id)
        ).first()
    assert message_id, "no message concerns the family"
    coordinator = story.client("referrals", "coordinator")
    link = _ok(coordinator.get(f"/referrals/{referral.id}/respond-link"), 200)["url"]
    _ok(coordinator.post(f"/referrals/{referral.id}/comments", json={"body": "Ждём"}), 201)
    story.ids.update(
        family_id=family["id"], case_id=case["id"], referral_id=referral.id,
        signal_id=signal_ids[0], intake_id=intake["id"], raid_id=raid_id, visit_id=visit_id,
        message_id=message_id, respond_query=urlsplit(link).query,
    )  # fmt: skip
    return story


def _signals(story: Story, family_id: str) -> list[str]:
    teacher = story.client("referrals", "agency_staff", "teacher-1", agency="school-1")
    coordinator = story.client("referrals", "coordinator")
    ids = []
    for accept in ({"family_id": family_id}, {}):
        body = {
            "district": DISTRICT, "observed": "пропуски занятий", "priority": "amber",
            "observed_at": dt.datetime.now(dt.UTC).isoformat(), "family": {"surname": "Смирнова"},
        }  # fmt: skip
        signal = _ok(teacher.post("/signals", json=body), 201)
        _ok(coordinator.post(f"/signals/{signal['id']}/accept", json=accept), 200)
        ids.append(signal["id"])
    return ids


def _raid(story: Story, family_id: str) -> tuple[str, str]:
    coordinator = story.client("raids", "coordinator")
    raid = {
        "title": "Рейд", "purpose": "planned_check", "district": DISTRICT,
        "date": (TODAY + dt.timedelta(days=10)).isoformat(), "start_time": "09:00",
        "end_time": "17:00", "organizer_email": "coordinator@district.test",
        "centre": {"name": "с. Тарногский Городок", "latitude": 60.5, "longitude": 43.58},
        "family_ids": [family_id], "participants": PARTICIPANTS,
    }  # fmt: skip
    scheduled = _ok(coordinator.post("/raids", json=raid), 201)
    for person in scheduled["participants"]:
        who = story.client("raids", "agency_staff", person["person_id"])
        _ok(who.post(f"/raids/{scheduled['id']}/participants/{person['id']}/confirm"), 200)
    _ok(coordinator.post(f"/raids/{scheduled['id']}/confirm"), 200)
    _ok(coordinator.post(f"/raids/{scheduled['id']}/route", json={}), 200)
    visit = {
        "family_id": family_id, "outcome": "visited", "children_seen": 1,
        "conditions": {"food": "adequate", "cleanliness": "satisfactory", "heating": "adequate",
                       "children_present": True, "children_state": "good",
                       "adults_state": "adequate"},
        "findings": "Условия удовлетворительные",
    }  # fmt: skip
    inspector = story.client("raids", "agency_staff", "p-pdn")
    act = _ok(inspector.post(f"/raids/{scheduled['id']}/visits", json=visit), 201)
    return scheduled["id"], act["id"]


def _gets(story: Story, service: str) -> list[str]:
    spec = _ok(story.system.app(service).test_client().get("/openapi.json"), 200)
    return [path for path, ops in spec["paths"].items() if "get" in ops]


def _fill(story: Story, service: str, path: str) -> tuple[str, dict[str, str]]:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in story.ids, f"{service} GET {path}: the story has no {name}"
        return story.ids[name]

    query = {k: v.format(**story.ids) for k, v in QUERIES.get((service, path), {}).items()}
    if (service, path) == ("referrals", "/referrals/{referral_id}/respond"):
        query.update(dict(p.split("=", 1) for p in story.ids["respond_query"].split("&")))
    return re.sub(r"\{([^}]+)\}", value, path), query


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def story(request: pytest.FixtureRequest) -> Story:
    fixture = "embedded_system" if request.param == "sqlite" else "system"
    return build(request.getfixturevalue(fixture))


def test_every_get_with_a_familys_data_leaves_a_read_entry_for_it(story: Story) -> None:
    family_id = story.ids["family_id"]
    walked: list[str] = []
    missing: list[str] = []
    for service in SERVICES:
        admin = story.client(service, "admin")
        for path in _gets(story, service):
            if (service, path) in NO_FAMILY_DATA:
                continue
            url, query = _fill(story, service, path)
            correlation = uuid.uuid4().hex
            headers = {"X-Correlation-ID": correlation}
            for role in ("coordinator", "admin", "lead_specialist"):
                client = story.client(service, role)
                if (service, path) == ("referrals", "/referrals/{referral_id}/respond"):
                    client = story.system.app(service).test_client()  # the link is the login
                response = client.get(url, query_string=query, headers=headers)
                if response.status_code != 403:
                    break
            assert response.status_code == 200, (service, path, response.get_data(as_text=True))
            trail = _ok(
                admin.get(
                    "/audit", query_string={"family_id": family_id, "correlation_id": correlation}
                ),
                200,
            )
            walked.append(f"{service} GET {path}")
            if trail["total"] < 1:
                missing.append(f"{service} GET {path} ({role})")
    print(f"walked {len(walked)} GETs, {len(NO_FAMILY_DATA)} named as without family data")
    assert not missing, "no read entry for the family: " + ", ".join(missing)
    # Writes about the family are in its trail too: a comment on its referral, a new route.
    for service, action, entity, fields in (
        ("referrals", "create", "referral", ["comments"]),
        ("raids", "update", "raid", ["route"]),
    ):
        written = _ok(
            story.client(service, "auditor").get(
                "/audit", query_string={"family_id": family_id, "action": action, "entity": entity}
            ),
            200,
        )["items"]
        assert fields in [e["fields"] for e in written], (service, written)
    # Each service has some, and the exemptions name only operations that exist.
    assert {w.split()[0] for w in walked} == set(SERVICES)
    every = {(s, p) for s in SERVICES for p in _gets(story, s)}
    assert set(NO_FAMILY_DATA) <= every, set(NO_FAMILY_DATA) - every
    assert len(walked) + len(NO_FAMILY_DATA) == len(every)
