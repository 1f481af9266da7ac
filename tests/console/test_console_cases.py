"""The case workspace, the approvals inbox and break-the-glass with the service clients FAKED at
the client-class boundary: what the pages show from what the APIs answer, what the forms send,
refusals shown next to their fields, a service that is down. The browser test runs the real
services (test_console_casework_browser.py)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from services.console.app import create_app
from services.console.clients import ApiError, NotFound, ServiceDown
from shared.config import Settings

TODAY = dt.date.today()
DOMAINS = (
    "child_safety",
    "parenting",
    "material_conditions",
    "housing",
    "health",
    "education",
    "social_ties",
    "parents_employment",
)
AGENCIES = [
    {
        "id": "family-centre",
        "name": "КЦСОН",
        "kind": "family_centre",
        "districts": ["Тарногский район"],
        "contacts": [
            {"person_id": "demo-coordinator", "name": "Координатор (демо)", "role": "coordinator"},
            {
                "person_id": "demo-specialist",
                "name": "Ведущий специалист (демо)",
                "role": "lead_specialist",
            },
        ],
    },
    {
        "id": "tarnoga-pdn",
        "name": "ОМВД, ПДН",
        "kind": "police_pdn",
        "districts": ["Тарногский район"],
        "contacts": [
            {"person_id": "demo-inspector", "name": "Инспектор ПДН (демо)", "role": "inspector"}
        ],
    },
]


def catalogue(*codes: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"code": c, "title_ru": ru, "title_en": ru, "active": True} for c, ru in codes]


class FakeRegistry:
    def __init__(self) -> None:
        self.writes: list[tuple[str, str, Any, str | None]] = []
        self.refuse: ApiError | None = None
        self.stage = "preparatory"
        self.missing = ["agreement", "plan_approved"]
        self.approvals: list[dict[str, Any]] = []
        self.grants_items: list[dict[str, Any]] = []

    def case(self, case_id: str) -> dict[str, Any]:
        if case_id != "c-1":
            raise NotFound("registry", 404, "Not Found")
        return {
            "id": "c-1",
            "family_id": "f-1",
            "stage": self.stage,
            "opened_on": TODAY.isoformat(),
            "closed_on": None,
            "reentry": False,
            "entry_category": "risk_group",
            "lead_specialist": "demo-specialist",
            "analysis": None,
            "outcome": None,
            "decision_ref": None,
            "plan_approved_at": None,
            "next_stage": {"stage": "support", "missing": self.missing},
        }

    def workspace(self, case_id: str, *, contacts: int = 50) -> dict[str, Any]:
        """As the registry's GET /cases/<id>/workspace answers."""
        parts = ("problems", "strengths", "agreements", "measures", "approvals")
        return {
            "case": self.case(case_id),
            "number": "Т-2026-0007",
            **{part: self.case_part(case_id, part) for part in parts},
            "assessments": self.assessments(case_id),
            "contacts": self.contacts(case_id),
        }

    def case_part(self, case_id: str, part: str) -> Any:
        late = (TODAY - dt.timedelta(days=3)).isoformat()
        return {
            "problems": [{"code": "truancy", "identified_on": TODAY.isoformat(), "note": None}],
            "strengths": [],
            "agreements": [],
            "approvals": self.approvals,
            "measures": [
                {
                    "id": "m-1",
                    "kind": "pdn_check",
                    "title": "Проверка условий",
                    "agency_id": "tarnoga-pdn",
                    "deadline": late,
                    "status": "in_progress",
                    "overdue": True,
                    "result_note": None,
                    "not_done_reason": None,
                    "agency_access": {"granted": False, "reason": "not_shared"},
                },
                {
                    "id": "m-2",
                    "kind": "counselling",
                    "title": "Консультации психолога",
                    "agency_id": None,
                    "deadline": (TODAY + dt.timedelta(days=30)).isoformat(),
                    "status": "planned",
                    "overdue": False,
                    "result_note": None,
                    "not_done_reason": None,
                },
            ],
        }[part]

    def assessments(self, case_id: str) -> dict[str, Any]:
        first = dict.fromkeys(DOMAINS, 2)
        latest = {**dict.fromkeys(DOMAINS, 4), "housing": 3}
        return {
            "items": [
                {"assessed_on": (TODAY - dt.timedelta(days=60)).isoformat(), "scores": first},
                {"assessed_on": TODAY.isoformat(), "scores": latest},
            ],
            "dynamics": {},
        }

    def contacts(self, case_id: str) -> dict[str, Any]:
        item = {
            "occurred_on": TODAY.isoformat(),
            "kind": "counselling_family",
            "staff": ["demo-specialist"],
            "note": "беседа с матерью",
        }
        return {"items": [item], "total": 1, "page": 1, "pages": 1}

    def catalogue(self, name: str) -> list[dict[str, Any]]:
        return {
            "problem": catalogue(("truancy", "Пропуски занятий")),
            "strength": catalogue(("attachment_to_children", "Привязанность к детям")),
            "measure_kind": catalogue(
                ("counselling", "Консультирование"), ("pdn_check", "Проверка инспектором ПДН")
            ),
        }[name]

    def case_write(
        self, method: str, path: str, body: Any, *, idempotency_key: str | None = None
    ) -> Any:
        if self.refuse is not None:
            raise self.refuse
        self.writes.append((method, path, body, idempotency_key))
        return {}

    def approvals_inbox(self, **filters: Any) -> dict[str, Any]:
        self.inbox_filters = filters
        return {"items": self.approvals, "total": len(self.approvals), "page": 1, "pages": 1}

    def break_glass(
        self, family_id: str, reason: str, minutes: int | None, *, idempotency_key: str
    ) -> dict[str, Any]:
        if self.refuse is not None:
            raise self.refuse
        self.writes.append(("POST", f"/families/{family_id}/break-glass", minutes, reason))
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes or 30)
        grant = {"id": "g-1", "family_id": family_id, "expires_at": expires.isoformat()}
        self.grants_items.append({**grant, "active": True, "number": "Т-2026-0007"})
        return grant

    def glass_limits(self) -> dict[str, int]:
        return {"default_minutes": 30, "max_minutes": 120}

    def end_glass(self, family_id: str, grant_id: str, *, idempotency_key: str) -> Any:
        self.grants_items = []
        return {}

    def grants(self, **filters: Any) -> dict[str, Any]:
        items = self.grants_items
        return {"items": items, "total": len(items), "page": 1, "pages": 1}


class FakeReferrals:
    def __init__(self, down: bool = False) -> None:
        self.down = down

    def agencies(self) -> list[dict[str, Any]]:
        return AGENCIES

    def referrals_of_measures(self, measure_ids: list[str]) -> dict[str, dict[str, Any]]:
        if self.down:
            raise ServiceDown("referrals", "timeout")
        assert measure_ids == ["m-1"]
        return {
            "m-1": {
                "id": "r-1",
                "number": "R-2026-000001",
                "measure_id": "m-1",
                "status": "accepted",
                "status_reason": None,
                "outcome": None,
            }
        }

    def referral(self, referral_id: str) -> dict[str, Any]:
        comment = {
            "author_id": "demo-inspector",
            "body": "Выезд в четверг",
            "at": dt.datetime.now(dt.UTC).isoformat(),
        }
        return {"id": referral_id, "comments": [comment]}

    def new_signals(self, **_: Any) -> list[dict[str, Any]]:
        return []

    def referrals_awaiting(self, agency_id: str) -> int:
        return 0


class FakeClients:
    def __init__(self, registry: FakeRegistry, referrals: FakeReferrals) -> None:
        self.registry = registry
        self.referrals = referrals


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def make_app(console_settings: Settings, registry: FakeRegistry) -> Iterator[Any]:
    settings = console_settings

    def build(referrals_down: bool = False) -> Flask:
        referrals = FakeReferrals(referrals_down)
        return create_app(
            settings,
            clients_factory=lambda _t, _c: FakeClients(registry, referrals),  # type: ignore[arg-type,return-value]
        )

    yield build


def csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def signed_in(app: Flask, person_id: str = "demo-specialist") -> FlaskClient:
    client = app.test_client()
    token = csrf(client, "/sign-in")
    answer = client.post("/sign-in", data={"person_id": person_id, "csrf_token": token})
    assert answer.status_code == 302
    return client


def form_key(page: str, form_id: str) -> str:
    form = page.split(f'id="{form_id}"', 1)[1].split("</form>", 1)[0]
    match = re.search(r'name="idempotency_key" value="([^"]+)"', form)
    assert match
    return match.group(1)


def visible_text(page: str) -> str:
    body = page.split("<main", 1)[1].split("</main>", 1)[0]
    return re.sub(r"<[^>]+>", " ", body)


def test_the_workspace_shows_every_part_in_words(make_app: Any) -> None:
    client = signed_in(make_app())
    answer = client.get("/cases/c-1")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    text = visible_text(page)
    assert "Т-2026-0007" in text
    assert "соглашения с семьёй" in text and "утверждения плана координатором" in text
    assert 'aria-current="step">Подготовительный' in page
    assert "Пропуски занятий" in text and "Проверка инспектором ПДН: Проверка условий" in text
    plan = page.split('id="measure-m-1"', 1)[1].split("</li>", 1)[0]
    assert "measure--overdue" in page.split('id="measure-m-1"', 1)[0].rsplit("<li", 1)[1]
    assert "Просрочено" in plan and "ОМВД, ПДН" in plan
    assert "семья не разрешила передавать данные ведомствам этого вида" in plan
    assert "Принято" in plan and "R-2026-000001" in plan
    assert "Выезд в четверг" in page and "Инспектор ПДН (демо)" in page
    assert "Центр (своими силами)" in page.split('id="measure-m-2"', 1)[1]
    assert page.count('class="chart__line"') == 9  # eight domains and the average
    assert "<caption>Баллы по сферам на каждую дату оценки</caption>" in page
    assert "Жилищные условия" in text and "+1" in text and "+2" in text
    assert "Семейная консультация" in text and "беседа с матерью" in text
    for raw in ("pdn_check", "police_pdn", "risk_group", "in_progress", "counselling_family"):
        assert raw not in text, raw
    assert 'type="checkbox" id="agreement-share-police_pdn"' in page
    assert ">ПДН</label>" in page and ">Благотворительная организация</label>" in page


def test_a_measure_is_added_with_the_forms_key_and_the_page_comes_back_to_the_plan(
    make_app: Any, registry: FakeRegistry
) -> None:
    client = signed_in(make_app())
    page = client.get("/cases/c-1").get_data(as_text=True)
    key = form_key(page, "measure-form")
    answer = client.post(
        "/cases/c-1/measures",
        data={
            "csrf_token": csrf(client, "/cases/c-1"),
            "idempotency_key": key,
            "kind": "pdn_check",
            "title": "Проверка условий",
            "agency_id": "tarnoga-pdn",
            "deadline": "2030-01-31",
        },
    )
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/cases/c-1#plan")
    assert registry.writes == [
        (
            "POST",
            "/cases/c-1/measures",
            {
                "kind": "pdn_check",
                "title": "Проверка условий",
                "agency_id": "tarnoga-pdn",
                "deadline": "2030-01-31",
            },
            key,
        )
    ]
    assert '<option value="tarnoga-pdn"' in page  # the agency is picked from the directory


def test_a_refusal_keeps_what_was_typed_and_puts_the_error_next_to_its_field(
    make_app: Any, registry: FakeRegistry
) -> None:
    client = signed_in(make_app())
    token = csrf(client, "/cases/c-1")
    registry.refuse = ApiError(
        "registry", 422, "Unprocessable", None, {"deadline": ["today or later"]}
    )
    data = {
        "csrf_token": token,
        "kind": "counselling",
        "title": "Три встречи",
        "deadline": "2020-01-01",
    }
    answer = client.post("/cases/c-1/measures", data=data)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert '<p class="field-error" id="measure-deadline-error">today or later' in page
    assert 'value="Три встречи"' in page and 'value="2020-01-01"' in page
    assert '<a href="#measure-deadline">Срок: today or later</a>' in page
    htmx = client.post("/cases/c-1/measures", data=data, headers={"HX-Request": "true"})
    assert htmx.status_code == 200 and "measure-deadline-error" in htmx.get_data(as_text=True)


def test_an_assessment_sends_eight_scores_and_a_domains_error_names_it(
    make_app: Any, registry: FakeRegistry
) -> None:
    client = signed_in(make_app())
    token = csrf(client, "/cases/c-1")
    data = {"csrf_token": token, "assessed_on": TODAY.isoformat(), "note": ""}
    data.update({f"score_{d}": "3" for d in DOMAINS})
    assert client.post("/cases/c-1/assessments", data=data).status_code == 303
    [(method, path, body, _key)] = registry.writes
    assert (method, path) == ("POST", "/cases/c-1/assessments")
    assert body["scores"] == dict.fromkeys(DOMAINS, 3) and body["note"] is None
    registry.refuse = ApiError(
        "registry", 422, "Unprocessable", None, {"json.scores.housing": ["required"]}
    )
    page = client.post("/cases/c-1/assessments", data=data).get_data(as_text=True)
    assert '<a href="#assessment-score_housing">Жилищные условия: required</a>' in page


def test_the_agreement_sends_the_consents_per_agency_kind(
    make_app: Any, registry: FakeRegistry
) -> None:
    client = signed_in(make_app())
    data = {
        "csrf_token": csrf(client, "/cases/c-1"),
        "signed_on": TODAY.isoformat(),
        "valid_until": (TODAY + dt.timedelta(days=365)).isoformat(),
        "consent_data_processing": "on",
        "share_with": ["police_pdn", "charity", "health"],
    }
    assert client.post("/cases/c-1/agreements", data=data).status_code == 303
    [(_m, _p, body, _k)] = registry.writes
    assert body["share_with"] == ["police_pdn", "charity", "health"]
    assert body["consent_data_processing"] is True


def test_only_a_coordinator_other_than_the_requester_sees_the_decision_form(
    make_app: Any, registry: FakeRegistry
) -> None:
    registry.stage = "final"
    registry.approvals = [
        {
            "id": "a-1",
            "case_id": "c-1",
            "kind": "closing",
            "state": "pending",
            "requested_by": "demo-specialist",
            "requested_at": dt.datetime.now(dt.UTC).isoformat(),
            "number": "Т-2026-0007",
            "district": "Тарногский район",
            "stage": "final",
        }
    ]
    app = make_app()
    specialist = signed_in(app).get("/cases/c-1").get_data(as_text=True)
    assert "decide-a-1-form" not in specialist and "Ожидает решения" in specialist
    assert "Отправить закрытие на утверждение" not in specialist  # one is already waiting
    coordinator = signed_in(app, "demo-coordinator")
    page = coordinator.get("/cases/c-1").get_data(as_text=True)
    assert 'id="decide-a-1-form"' in page and "Постановление КДН и ЗП № 14/2" in page
    answer = coordinator.post(
        "/cases/c-1/approvals/a-1/decision",
        data={
            "csrf_token": csrf(coordinator, "/cases/c-1"),
            "decision": "approve",
            "decision_ref": "Постановление № 14/2",
            "decision_date": "",
            "comment": "",
        },
    )
    assert answer.status_code == 303
    [(_m, path, body, _k)] = registry.writes
    assert path == "/approvals/a-1/decision"
    assert body == {
        "decision": "approve",
        "decision_ref": "Постановление № 14/2",
        "decision_date": None,
        "comment": None,
    }
    inbox = coordinator.get("/approvals").get_data(as_text=True)
    assert "Т-2026-0007" in inbox and 'href="/cases/c-1#approvals"' in inbox
    assert registry.inbox_filters["mine_to_decide"] is True


def test_referrals_down_empties_only_the_referral_parts(make_app: Any) -> None:
    answer = signed_in(make_app(referrals_down=True)).get("/cases/c-1")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "Направления и сигналы: служба сейчас не отвечает" in page
    assert "Проверка условий" in page and "Консультации психолога" in page


def test_an_unknown_case_is_a_404_page(make_app: Any) -> None:
    assert signed_in(make_app()).get("/cases/nope").status_code == 404


def test_break_the_glass_with_a_reason_then_a_banner_on_every_page_until_ended(
    make_app: Any, registry: FakeRegistry
) -> None:
    app = make_app()
    inspector = signed_in(app, "demo-inspector")
    assert "banner-glass" not in inspector.get("/").get_data(as_text=True)
    form = inspector.get("/families/f-1/break-glass").get_data(as_text=True)
    assert 'value="30"' in form and "От 1 до 120 минут." in form
    token = csrf(inspector, "/families/f-1/break-glass")
    registry.refuse = ApiError(
        "registry", 422, "Unprocessable", None, {"reason": ["at least 10 characters"]}
    )
    refused = inspector.post(
        "/families/f-1/break-glass", data={"csrf_token": token, "reason": "надо", "minutes": "45"}
    )
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert "at least 10 characters" in page and 'value="45"' in page
    registry.refuse = None
    granted = inspector.post(
        "/families/f-1/break-glass",
        data={"csrf_token": token, "reason": "вызов 112: ребёнок один дома", "minutes": "45"},
    )
    assert granted.status_code == 303 and granted.headers["Location"] == "/families/f-1"
    assert registry.writes[-1][2:] == (45, "вызов 112: ребёнок один дома")
    home = inspector.get("/").get_data(as_text=True)
    assert "Экстренный доступ к данным семьи Т-2026-0007 до" in home
    ended = inspector.post(
        "/access/grants/g-1/end",
        data={"csrf_token": csrf(inspector, "/"), "family_id": "f-1", "next": "/"},
    )
    assert ended.status_code == 303 and ended.headers["Location"] == "/"
    assert "banner-glass" not in inspector.get("/").get_data(as_text=True)


def test_coordinators_see_the_grants(make_app: Any, registry: FakeRegistry) -> None:
    now = dt.datetime.now(dt.UTC)
    registry.grants_items = [
        {
            "id": "g-1",
            "family_id": "f-1",
            "number": "Т-2026-0007",
            "district": "Тарногский район",
            "subject": "demo-inspector",
            "agency_id": "tarnoga-pdn",
            "reason": "вызов 112",
            "granted_at": now.isoformat(),
            "expires_at": (now + dt.timedelta(minutes=30)).isoformat(),
            "ended_at": None,
            "active": True,
        }
    ]
    page = signed_in(make_app(), "demo-coordinator").get("/access/grants?active=true")
    text = visible_text(page.get_data(as_text=True))
    assert "Инспектор ПДН (демо)" in text and "ОМВД, ПДН" in text and "вызов 112" in text
    assert "Действует" in text and "Завершить" in text


def test_every_registry_code_the_workspace_shows_has_a_label() -> None:
    """The console imports no service's code; this test reads both, so a code the registry adds
    cannot reach a page as «—»."""
    from services.console.labels import LABELS
    from services.console.views.cases import CONTACT_KINDS, OUTCOMES
    from services.console.workspace import ASSESSMENT_DOMAINS
    from services.registry import access, models

    assert ASSESSMENT_DOMAINS == models.ASSESSMENT_DOMAINS
    assert set(OUTCOMES) == set(models.OUTCOMES) <= set(LABELS["outcome"])
    assert set(CONTACT_KINDS) <= set(models.CONTACT_LOG_KINDS) <= set(LABELS["contact_kind"])
    assert set(models.ASSESSMENT_DOMAINS) <= set(LABELS["assessment_domain"])
    assert set(models.MEASURE_STATUSES) <= set(LABELS["measure_status"])
    assert set(models.STAGES) <= set(LABELS["stage"])
    assert set(access.ACCESS_REASONS) <= set(LABELS["agency_access_reason"])


def test_the_approvals_inbox_asks_both_services_at_once_and_names_the_registry_when_down(
    make_app: Any, registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    threads: set[str] = set()
    inbox = registry.approvals_inbox

    def recorded(**filters: Any) -> dict[str, Any]:
        threads.add(threading.current_thread().name)
        return inbox(**filters)

    monkeypatch.setattr(registry, "approvals_inbox", recorded)
    coordinator = signed_in(make_app())
    assert coordinator.get("/approvals").status_code == 200
    assert all(name.startswith("console-api") for name in threads)  # in the gather's pool

    def down(**_filters: Any) -> dict[str, Any]:
        raise ServiceDown("registry", "timeout")

    monkeypatch.setattr(registry, "approvals_inbox", down)
    answer = coordinator.get("/approvals")
    assert answer.status_code == 503
    assert "Реестр семей" in answer.get_data(as_text=True)
