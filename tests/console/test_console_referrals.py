"""The signals, referrals and volunteer's link pages with the service clients FAKED at the
client-class boundary (fast): what each page does with what the referrals API answers, the
calls it makes for each button, and the link page's safety rules. The browser tests run the
real services (test_console_story_browser.py)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from console.test_console_views import AGENCIES, FakeNotifications, FakeRaids, FakeRegistry
from services.console.app import create_app
from services.console.clients import ApiError, ServiceDown, SignInAgain
from services.console.views.signals import countdown
from shared.config import Settings

TOKEN = "signed-token-0123456789"
NOW = dt.datetime.now(dt.UTC)


def referral(status: str = "requested", **extra: Any) -> dict[str, Any]:
    return {
        "id": "ref-1",
        "number": "R-2026-000001",
        "family_id": "fam-1",
        "family_number": "F-1",
        "agency_id": "tarnoga-pdn",
        "service_code": "pdn_check",
        "reason": "пропуски занятий",
        "urgency": "routine",
        "deadline": "2026-12-20",
        "contact": {"person_id": "demo-specialist", "name": "Ведущий специалист (демо)"},
        "status": status,
        "sender_id": "demo-specialist",
        "owner_id": None,
        "history": [],
        "comments": [],
        **extra,
    }


class FakeReferrals:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.status = "requested"
        self.link_valid = True
        self.known: dict[str, Any] = {"surname": "Морозов"}
        self.duplicates: list[dict[str, Any]] | None = None  # None: the registry is down

    def agencies(self) -> list[dict[str, Any]]:
        return AGENCIES

    def referrals(self, **filters: Any) -> dict[str, Any]:
        self.calls.append(("list", filters))
        return {"items": [referral(self.status)], "total": 1, "page": 1, "pages": 1}

    def overdue(self, **filters: Any) -> dict[str, Any]:
        item = {**referral(), "kind": "acknowledge", "days_overdue": 3, "escalated_at": None}
        return {"items": [item], "total": 1, "page": 1, "pages": 1}

    def referral(self, referral_id: str) -> dict[str, Any]:
        return referral(self.status)

    def transition(self, referral_id: str, body: dict[str, Any], *, idempotency_key: str) -> Any:
        self.calls.append(("transition", body))
        self.status = body["status"]
        return referral(self.status)

    def claim(self, referral_id: str, *, idempotency_key: str) -> Any:
        self.calls.append(("claim", referral_id))
        return referral(self.status)

    def comment(self, referral_id: str, body: str, *, idempotency_key: str) -> Any:
        self.calls.append(("comment", body))
        return {}

    def by_link(self, referral_id: str, token: str) -> dict[str, Any]:
        if not self.link_valid or token != TOKEN:
            raise SignInAgain("referrals", 401, "Unauthorized")
        actions = {"requested": ["accept", "reject"], "accepted": ["start", "complete"]}
        return {**referral(self.status), "actions": actions.get(self.status, [])}

    def answer_by_link(self, referral_id: str, token: str, body: dict[str, Any]) -> Any:
        self.calls.append(("link", body))
        if body["action"] == "reject" and not body.get("reason"):
            raise ApiError("referrals", 422, "Unprocessable", errors={"reason": ["required"]})
        self.status = {"accept": "accepted", "reject": "rejected", "complete": "completed"}[
            body["action"]
        ]
        return self.by_link(referral_id, token)

    def signals(self, **filters: Any) -> dict[str, Any]:
        due = lambda h: (NOW + dt.timedelta(hours=h)).isoformat()  # noqa: E731
        items = [
            {
                "id": "s1",
                "priority": "red",
                "triage_due_at": due(1),
                "observed": "синяки",
                "observed_at": NOW.isoformat(),
                "district": "Тарногский район",
                "status": "new",
            },
            {
                "id": "s2",
                "priority": "green",
                "triage_due_at": due(20),
                "observed": "пропуски",
                "observed_at": NOW.isoformat(),
                "district": "Тарногский район",
                "status": "new",
            },
        ]
        return {"items": items, "total": 2}

    def signal(self, signal_id: str) -> dict[str, Any]:
        return {
            **self.signals()["items"][0],
            "family": self.known,
            "refusal_reason": "family-removed",
            "refused_at": NOW.isoformat(),
        }

    def accept_signal(self, signal_id: str, body: dict[str, Any], *, idempotency_key: str) -> Any:
        self.calls.append(("accept", body))
        return {}

    def check_duplicates(self, report: dict[str, Any]) -> list[dict[str, Any]]:
        """The registry's duplicate check, faked here with the signal it is asked about."""
        self.calls.append(("duplicates", report))
        if self.duplicates is None:
            raise ServiceDown("registry", "timeout")
        return self.duplicates

    def dismiss_signal(self, signal_id: str, reason: str, *, idempotency_key: str) -> Any:
        self.calls.append(("dismiss", reason))
        return {}


STATS = {
    "year_from": 2026,
    "year_to": 2026,
    "rows": [
        {
            "district": "Тарногский район",
            "year": 2026,
            "entered": 4,
            "re_entered": 1,
            "removed": {"total": 2},
            "in_bank_at_year_end": {"total": 3},
        }
    ],
}
AUDIT = {
    "at": "2026-12-07T10:00:00+00:00",
    "actor": "demo-specialist",
    "action": "read",
    "entity": "family",
    "fields": ["members"],
    "reason": None,
}


class Clients:
    def __init__(self, referrals: FakeReferrals) -> None:
        self.referrals = referrals
        self.registry = FakeRegistry()
        self.registry.families = lambda **_: {"items": []}  # type: ignore[attr-defined]
        self.registry.check_duplicates = referrals.check_duplicates  # type: ignore[attr-defined]
        self.registry.statistics = lambda **_: STATS  # type: ignore[attr-defined]
        self.registry.statistics_png = lambda **_: b"\x89PNG fake"  # type: ignore[attr-defined]
        self.registry.audit = lambda **f: {  # type: ignore[attr-defined]
            "items": [AUDIT] if f.get("family_id") == "fam-1" else [],
            "total": 1,
        }
        self.raids = FakeRaids()
        self.notifications = FakeNotifications()


@pytest.fixture
def fake() -> FakeReferrals:
    return FakeReferrals()


@pytest.fixture
def app(console_settings: Settings, fake: FakeReferrals) -> Iterator[Flask]:
    settings = console_settings
    yield create_app(settings, clients_factory=lambda _t, _c: Clients(fake))  # type: ignore[arg-type,return-value]


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def signed_in(app: Flask, person_id: str) -> FlaskClient:
    client = app.test_client()
    token = csrf_of(client.get("/sign-in").get_data(as_text=True))
    client.post("/sign-in", data={"person_id": person_id, "csrf_token": token})
    return client


def test_the_link_page_shows_the_referral_with_no_referrer_and_no_store(app: Flask) -> None:
    answer = app.test_client().get(f"/referrals/ref-1/respond?token={TOKEN}")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["Cache-Control"] == "no-store"
    assert "R-2026-000001" in page and "Проверка инспектором ПДН" in page
    assert "Принять направление" in page and "Причина отказа" in page
    assert not re.search(r'(src|href)="https?://', page)  # nothing from another origin


def test_the_link_answers_go_to_the_api_with_the_token_and_the_state_is_shown(
    app: Flask, fake: FakeReferrals
) -> None:
    client = app.test_client()
    url = f"/referrals/ref-1/respond?token={TOKEN}"
    token = csrf_of(client.get(url).get_data(as_text=True))
    refused = client.post(url, data={"action": "reject", "reason": "", "csrf_token": token})
    assert refused.status_code == 422 and "required" in refused.get_data(as_text=True)
    answer = client.post(url, data={"action": "accept", "csrf_token": token})
    assert answer.status_code == 302
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Ответ записан" in page and "Сообщить о выполнении" in page
    client.post(url, data={"action": "complete", "outcome": "помощь оказана", "csrf_token": token})
    assert fake.calls[-1] == ("link", {"action": "complete", "outcome": "помощь оказана"})
    assert "Направление закрыто" in client.get(url).get_data(as_text=True)


def test_an_expired_or_replaced_link_says_so(app: Flask, fake: FakeReferrals) -> None:
    fake.link_valid = False
    answer = app.test_client().get(f"/referrals/ref-1/respond?token={TOKEN}")
    assert answer.status_code == 410
    assert "Ссылка больше не действует" in answer.get_data(as_text=True)
    assert app.test_client().get("/referrals/ref-1/respond").status_code == 404


def test_agency_staff_see_their_inbox_and_take_steps(app: Flask, fake: FakeReferrals) -> None:
    client = signed_in(app, "demo-inspector")
    page = client.get("/referrals?box=inbox&status=requested").get_data(as_text=True)
    assert (
        "list",
        {"status": "requested", "page": 1, "page_size": 50, "agency_id": "tarnoga-pdn"},
    ) in fake.calls
    assert "R-2026-000001" in page
    page = client.get("/referrals/ref-1").get_data(as_text=True)
    token = csrf_of(page)
    refused = client.post(
        "/referrals/ref-1/steps", data={"status": "rejected", "csrf_token": token}
    )
    assert refused.status_code == 422 and "Обязательное поле" in refused.get_data(as_text=True)
    client.post("/referrals/ref-1/steps", data={"status": "accepted", "csrf_token": token})
    assert [c for c in fake.calls if c[0] == "transition"] == [
        ("transition", {"status": "received"}),
        ("transition", {"status": "accepted"}),
    ]
    client.post("/referrals/ref-1/comments", data={"body": "созвонимся", "csrf_token": token})
    assert fake.calls[-1] == ("comment", "созвонимся")


def test_coordinators_see_overdue_referrals(app: Flask) -> None:
    client = signed_in(app, "demo-coordinator")
    page = client.get("/referrals/overdue").get_data(as_text=True)
    assert "Нет ответа" in page and "R-2026-000001" in page
    home_counter = client.get("/referrals?view=escalated")
    assert home_counter.headers["Location"] == "/referrals/overdue?escalated=1"
    page = client.get(home_counter.headers["Location"]).get_data(as_text=True)
    assert "Показаны только эскалированные" in page and "R-2026-000001" not in page


def test_the_triage_queue_shows_time_left_in_colour_and_words(app: Flask) -> None:
    client = signed_in(app, "demo-coordinator")
    page = client.get("/signals?status=new&priority=red").get_data(as_text=True)
    assert "countdown--red" in page and "синяки" in page and "пропуски" not in page
    page = client.get("/signals/s1").get_data(as_text=True)
    assert "Реестр вернул сигнал на разбор" in page
    token = csrf_of(page)
    refused = client.post("/signals/s1/dismiss", data={"reason": "", "csrf_token": token})
    assert refused.status_code == 422


def test_countdown_colours() -> None:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    tone = lambda h: countdown((at + dt.timedelta(hours=h)).isoformat(), at)["tone"]  # noqa: E731
    assert [tone(1), tone(2), tone(3), tone(6), tone(7), tone(30)] == [
        "red",
        "red",
        "amber",
        "amber",
        "green",
        "green",
    ]


def test_statistics_show_the_yearly_table_and_the_chart_from_this_origin(app: Flask) -> None:
    client = signed_in(app, "demo-region")
    page = client.get("/statistics?district=Тарногский район").get_data(as_text=True)
    assert "<td>2026</td>" in page and 'src="/statistics/chart.png?district=' in page
    chart = client.get("/statistics/chart.png")
    assert chart.content_type == "image/png" and chart.data.startswith(b"\x89PNG")


def test_the_audit_page_lists_the_family_s_trail(app: Flask) -> None:
    page = signed_in(app, "demo-admin").get("/audit?family_id=fam-1").get_data(as_text=True)
    assert "demo-specialist" in page and "members" in page


def test_the_emergency_access_email_s_audit_link_opens_the_grants_for_a_coordinator(
    app: Flask,
) -> None:
    answer = signed_in(app, "demo-coordinator").get("/audit?entity_id=grant-1")
    assert answer.status_code == 302 and answer.headers["Location"] == "/access/grants"


def test_a_signal_s_family_is_checked_for_duplicates_side_by_side_with_why(
    app: Flask, fake: FakeReferrals
) -> None:
    """The signal page asks the registry's duplicate check with the family as the signal reports
    it, shows each candidate with its reasons, and accepts the signal for the one chosen."""
    fake.known = {
        "surname": "Морозов",
        "settlement": "с. Спасское",
        "children": [{"name": "Кирилл", "birth_date": "2014-03-09"}, {"name": "Анна"}],
    }
    fake.duplicates = [
        {
            "family_id": "fam-7",
            "number": "F-7",
            "score": 0.64,
            "matched_fields": ["members.full_name", "address.settlement"],
        }
    ]
    client = signed_in(app, "demo-coordinator")
    page = client.get("/signals/s1").get_data(as_text=True)
    child = {"role": "child", "birth_date": None, "school": None, "school_class": None}
    assert (
        "duplicates",
        {
            "address": {
                "region": "Тарногский район",
                "district": "Тарногский район",
                "settlement": "с. Спасское",
            },
            "members": [
                {**child, "full_name": "Морозов Кирилл", "birth_date": "2014-03-09"},
                {**child, "full_name": "Морозов Анна"},
            ],
        },
    ) in fake.calls
    assert "Семья F-7" in page and "Сходство: 64%" in page
    assert "имя члена семьи" in page and "населённый пункт" in page
    assert "Это та же семья: принять сигнал для F-7" in page
    assert 'name="family_id" value="fam-7"' in page
    answer = client.post(
        "/signals/s1/accept", data={"family_id": "fam-7", "csrf_token": csrf_of(page)}
    )
    assert answer.status_code == 302 and ("accept", {"family_id": "fam-7"}) in fake.calls


def test_the_signal_page_works_with_the_registry_down(app: Flask, fake: FakeReferrals) -> None:
    page = signed_in(app, "demo-coordinator").get("/signals/s1")
    text = page.get_data(as_text=True)
    assert (
        "duplicates",
        {
            "address": {
                "region": "Тарногский район",
                "district": "Тарногский район",
                "settlement": "—",
            },
            "members": [{"role": "other", "full_name": "Морозов"}],
        },
    ) in fake.calls
    assert page.status_code == 200 and "синяки" in text and "Отклонить сигнал" in text
    assert "служба сейчас не отвечает" in text and "Сходство" not in text
