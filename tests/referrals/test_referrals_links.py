"""Answering a referral by a signed link, without an account: what the page shows, accept /
reject / start / complete through the lifecycle (audited as ``link:<agency>``), and the
refusals: expired, tampered, foreign or other-purpose tokens (401), final states (409)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import System
from sqlalchemy import select
from test_referrals_api import consent

from services.referrals.models import Referral, tables
from shared.auth.links import issue_link_token

pytestmark = pytest.mark.embedded

CHARITY = {
    "id": "charity-1",
    "name": "Фонд",
    "kind": "charity",
    "services": ["food_aid"],
    "delivery": "link",
    "email": "fund@charity.test",
}
REFERRAL = {
    "family_id": "fam-1",
    "family_number": "Т-001",
    "district": "Тарнога",
    "service_code": "food_aid",
    "agency_id": "charity-1",
    "reason": "продуктовый набор",
    "urgency": "urgent",
    "deadline": "2030-01-31",
    "contact": {"person_id": "spec-1", "name": "Специалист", "phone": "+7 900 000-00-00"},
}
SHOWN = {
    "id",
    "number",
    "family_number",
    "service_code",
    "reason",
    "urgency",
    "deadline",
    "contact",
    "status",
    "acknowledge_due_at",
    "due_at",
    "actions",
}


def client(system: System, role: str | None = None) -> Any:
    c = system.app("referrals").test_client()
    if role:
        c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token(role)}"
    return c


def setup(system: System, count: int = 1) -> list[str]:
    admin = client(system, "admin")
    created = admin.post("/agencies", json=CHARITY)
    assert created.status_code == 201 and created.get_json()["delivery"] == "link"
    consent(system, kinds=("charity",))
    lead = client(system, "lead_specialist")
    ids = []
    for _ in range(count):
        answer = lead.post("/referrals", json=REFERRAL)
        assert answer.status_code == 201, answer.get_json()
        ids.append(answer.get_json()["id"])
    return ids


def link_of(system: System, referral_id: str) -> str:
    answer = client(system, "lead_specialist").get(f"/referrals/{referral_id}/respond-link")
    assert answer.status_code == 200
    url = answer.get_json()["url"]
    assert answer.get_json()["valid_days"] == 14
    return url


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_the_link_shows_only_what_the_referral_carries(embedded_system: System) -> None:
    [referral_id] = setup(embedded_system)
    url = link_of(embedded_system, referral_id)
    token = parse_qs(urlsplit(url).query)["token"][0]
    # the shape notifications builds as well
    assert url == f"https://opora.test/referrals/{referral_id}/respond?token={token}"
    page = client(embedded_system).get(path_of(url))
    assert page.status_code == 200
    body = page.get_json()
    assert set(body) == SHOWN
    assert body["number"].startswith("R-") and body["reason"] == "продуктовый набор"
    assert body["status"] == "requested" and body["actions"] == ["accept", "reject"]
    # opening the link changed nothing (mail scanners open links too)
    with embedded_system.session("referrals") as session:
        assert session.get(Referral, referral_id).status == "requested"  # type: ignore[union-attr]
    # the same token straight from shared.auth.links opens it too
    direct = issue_link_token(embedded_system.settings("referrals"), "referral", referral_id)
    assert (
        client(embedded_system).get(f"/referrals/{referral_id}/respond?token={direct}").status_code
        == 200
    )


def test_accept_start_complete_by_link_is_the_lifecycle_and_audited(
    embedded_system: System,
) -> None:
    [referral_id] = setup(embedded_system)
    path = path_of(link_of(embedded_system, referral_id))
    anon = client(embedded_system)
    accepted = anon.post(path, json={"action": "accept"})
    assert accepted.status_code == 200, accepted.get_json()
    assert accepted.get_json()["status"] == "accepted"
    assert accepted.get_json()["actions"] == ["start", "complete"]
    assert anon.post(path, json={"action": "start"}).get_json()["status"] == "in-progress"
    missing = anon.post(path, json={"action": "complete"})
    assert missing.status_code == 422 and "outcome" in missing.get_json()["errors"]
    done = anon.post(path, json={"action": "complete", "outcome": "набор выдан"})
    assert done.status_code == 200 and done.get_json()["status"] == "completed"
    final = anon.post(path, json={"action": "start"})
    assert final.status_code == 409 and final.mimetype == "application/problem+json"
    assert anon.post(path, json={"action": "accept"}).status_code == 409

    detail = client(embedded_system, "lead_specialist").get(f"/referrals/{referral_id}")
    history = [(h["to_status"], h["by"]) for h in detail.get_json()["history"]]
    assert history[-4:] == [
        ("received", "link:charity-1"),
        ("accepted", "link:charity-1"),
        ("in-progress", "link:charity-1"),
        ("completed", "link:charity-1"),
    ]
    assert detail.get_json()["outcome"] == "набор выдан"
    with embedded_system.session("referrals") as session:
        audit = session.execute(
            select(tables.audit_log.c.actor, tables.audit_log.c.action).where(
                tables.audit_log.c.entity_id == referral_id,
                tables.audit_log.c.actor == "link:charity-1",
            )
        ).all()
        events = (
            session.execute(
                select(tables.outbox.c.body).where(
                    tables.outbox.c.event_type == "referrals.referral.status_changed"
                )
            )
            .scalars()
            .all()
        )
    assert [a.action for a in audit].count("update") == 3
    assert sum('"by":"link:charity-1"' in e for e in events) == 4


def test_reject_needs_a_reason_and_ends_the_referral(embedded_system: System) -> None:
    [referral_id] = setup(embedded_system)
    path = path_of(link_of(embedded_system, referral_id))
    anon = client(embedded_system)
    refused = anon.post(path, json={"action": "reject"})
    assert refused.status_code == 422 and "reason" in refused.get_json()["errors"]
    with embedded_system.session("referrals") as session:  # nothing half-done
        assert session.get(Referral, referral_id).status == "requested"  # type: ignore[union-attr]
    rejected = anon.post(path, json={"action": "reject", "reason": "не наш профиль"})
    assert rejected.status_code == 200 and rejected.get_json()["status"] == "rejected"
    assert rejected.get_json()["actions"] == []
    assert anon.post(path, json={"action": "accept"}).status_code == 409
    assert anon.post(path, json={"action": "fly"}).status_code == 422


def test_bad_tokens_answer_401(embedded_system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = setup(embedded_system, count=2)
    settings = embedded_system.settings("referrals")
    anon = client(embedded_system)
    good = issue_link_token(settings, "referral", first)

    def status(referral_id: str, token: str, method: str = "get") -> int:
        url = f"/referrals/{referral_id}/respond?token={token}"
        if method == "post":
            return int(anon.post(url, json={"action": "accept"}).status_code)
        return int(anon.get(url).status_code)

    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    assert status(first, tampered) == 401
    assert status(second, good) == 401  # another referral's link
    assert status(second, good, "post") == 401
    other_purpose = issue_link_token(settings, "raids-feed", first)
    assert status(first, other_purpose) == 401
    problem = anon.get(f"/referrals/{first}/respond?token={tampered}")
    assert problem.mimetype == "application/problem+json"
    assert anon.get(f"/referrals/{first}/respond").status_code == 422  # no token at all

    real_time = time.time
    with monkeypatch.context() as m:  # a link issued 15 days ago
        m.setattr(time, "time", lambda: real_time() - 15 * 86400)
        old = issue_link_token(settings, "referral", first)
        m.setattr(time, "time", lambda: real_time() - 3 * 86400)
        three_days = issue_link_token(settings, "referral", first)
    expired = anon.get(f"/referrals/{first}/respond?token={old}")
    assert expired.status_code == 401 and "expired" in expired.get_json()["detail"]
    assert status(first, three_days) == 200
    shorter = embedded_system.app_with("referrals", REFERRALS_LINK_DAYS="2").test_client()
    assert shorter.get(f"/referrals/{first}/respond?token={three_days}").status_code == 401
    with embedded_system.session("referrals") as session:
        assert session.get(Referral, first).status == "requested"  # type: ignore[union-attr]


def test_a_draft_has_no_link(embedded_system: System) -> None:
    setup(embedded_system, count=0)
    lead = client(embedded_system, "lead_specialist")
    draft = lead.post("/referrals", json={**REFERRAL, "draft": True}).get_json()
    assert lead.get(f"/referrals/{draft['id']}/respond-link").status_code == 409
    token = issue_link_token(embedded_system.settings("referrals"), "referral", draft["id"])
    assert (
        client(embedded_system).get(f"/referrals/{draft['id']}/respond?token={token}").status_code
        == 401
    )
    staff = embedded_system.app("referrals").test_client()
    staff.environ_base["HTTP_AUTHORIZATION"] = (
        f"Bearer {embedded_system.token('agency_staff', agency='charity-1')}"
    )
    assert staff.get(f"/referrals/{draft['id']}/respond-link").status_code == 403
