"""The data bank's pages with the registry client FAKED at the client-class boundary: filters
in the URL, the search text kept out of it, htmx partials, saved views per person, the export
for coordinators. The browser test (test_console_families_browser.py) runs the real services."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from console.test_console_views import FakeClients, FakeRegistry, csrf, signed_in
from services.console.app import create_app
from services.console.clients import ApiError, ServiceDown
from shared.config import Settings

FAMILY = {
    "id": "fam-1",
    "number": "F-000001",
    "display_name": "Смирнова",
    "category": "risk_group",
    "region": "Вологодская область",
    "district": "Тарногский район",
    "settlement": "с. Тарногский Городок",
    "in_bank": True,
    "stage": "support",
    "lead_specialist": "demo-specialist",
    "created_at": "2026-03-01T10:00:00+00:00",
}


class DataBankRegistry(FakeRegistry):
    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.calls: list[dict[str, Any]] = []
        self.exports: list[tuple[str, dict[str, Any]]] = []
        self.reports: list[dict[str, Any]] = []
        self.address: dict[str, Any] = {
            "region": "Вологодская область",
            "district": "Тарногский район",
            "settlement": "с. Заречье",
        }
        self.moves = [{"valid_from": "2026-03-01", **self.address}]

    def families(self, **filters: Any) -> dict[str, Any]:
        self.calls.append(filters)
        if self.down:
            raise ServiceDown("registry", "timeout")
        if filters.get("q") == "31.02.2016":
            raise ApiError("registry", 422, "Unprocessable", errors={"q": ["нет такой даты"]})
        return {
            "items": [FAMILY],
            "page": filters.get("page", 1),
            "page_size": 25,
            "total": 30,
            "total_exact": True,
            "pages": 2,
        }

    def export_families(self, fmt: str, **filters: Any) -> tuple[bytes, str, str]:
        self.exports.append((fmt, filters))
        return b"\xef\xbb\xbfNumber\r\n", "text/csv; charset=utf-8", 'attachment; filename="x.csv"'

    def family(self, family_id: str) -> dict[str, Any]:
        return {
            **FAMILY,
            "address": self.address,
            "members": [
                {"role": "mother", "full_name": "Смирнова Елена", "birth_date": "1989-03-14"},
                {"role": "child", "full_name": "Смирнов Артём", "birth_date": "2013-09-02"},
            ],
        }

    def category_history(self, family_id: str) -> list[dict[str, Any]]:
        return [
            {
                "category_from": None,
                "category_to": "risk_group",
                "changed_on": "2026-03-01",
                "justification": "постановка",
            },
            {
                "category_from": "risk_group",
                "category_to": "sop",
                "changed_on": "2026-05-02",
                "justification": "ухудшение",
            },
        ]

    def addresses(self, family_id: str) -> list[dict[str, Any]]:
        return self.moves

    def update_family(
        self, family_id: str, body: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Like the registry: latitude past 90 is refused; a new settlement is a move."""
        self.reports.append({"update": family_id, **body, "key": idempotency_key})
        address = body["address"]
        if address["latitude"] is not None and float(address["latitude"]) > 90:
            raise ApiError(
                "registry",
                422,
                "Unprocessable",
                errors={"json.address.latitude": ["Must be greater than or equal to -90."]},
            )
        if address["settlement"] != self.address["settlement"]:
            self.moves.append({"valid_from": "2026-12-07", **address})
        self.address = dict(address)
        return {"id": family_id, "address": self.address}

    def family_cases(self, family_id: str) -> list[dict[str, Any]]:
        return [{"id": "case-1", "stage": "support", "opened_on": "2026-03-01"}]

    def case_part(self, case_id: str, part: str) -> Any:
        return {
            "contacts": [{"occurred_on": "2026-04-10", "kind": "raid_visit"}],
            "assessments": {"items": [{"assessed_on": "2026-03-20"}], "dynamics": {}},
            "approvals": {
                "items": [{"kind": "plan", "state": "approved", "requested_at": "2026-03-25"}]
            },
            "agreements": [
                {
                    "signed_on": "2026-03-05",
                    "valid_until": "2027-03-05",
                    "consent_data_processing": True,
                    "share_with": ["school", "police_pdn"],
                }
            ],
        }[part]

    def check_duplicates(self, report: dict[str, Any]) -> list[dict[str, Any]]:
        self.reports.append(report)
        return [
            {
                "family_id": "fam-1",
                "number": "F-000001",
                "score": 0.82,
                "matched_fields": ["members.birth_date", "address.house"],
                "members": [],
            }
        ]

    def register_family(self, body: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        self.reports.append({**body, "key": idempotency_key})
        if not body.get("link_to") and body["members"][-1]["full_name"] == "X":
            raise ApiError(
                "registry",
                422,
                "Unprocessable",
                errors={
                    "json.members.1.full_name": ["слишком короткое"],
                    "json.address.district": ["обязательно"],
                },
            )
        return {"id": body.get("link_to") or "fam-new"}

    def intakes(self, **filters: Any) -> dict[str, Any]:
        self.calls.append({"intakes": filters})
        return {"items": [{"id": "in-1"}], "total": 1}

    def intake(self, intake_id: str) -> dict[str, Any]:
        return {
            "id": intake_id,
            "created_at": "2026-12-01T09:00:00+00:00",
            "priority": "amber",
            "district": "Тарногский район",
            "state": "pending",
            "known": {
                "surname": "Морозова",
                "address": {"settlement": "с. Заречье"},
                "members": [{"full_name": "Морозова Анна", "birth_date": "2015-02-03"}],
            },
            "candidates": [
                {
                    "family_id": "fam-1",
                    "number": "F-000001",
                    "score": 0.7,
                    "matched_fields": ["children.birth_date"],
                }
            ],
        }

    def resolve_intake(
        self, intake_id: str, body: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        self.reports.append({"resolve": intake_id, **body, "key": idempotency_key})
        return {"id": intake_id, "family_id": body.get("family_id") or "fam-new"}


class DownReferrals:
    def family_referrals(self, family_id: str) -> list[dict[str, Any]]:
        raise ServiceDown("referrals", "timeout")

    def agencies(self) -> list[dict[str, Any]]:
        from console.test_console_views import AGENCIES

        return AGENCIES


class DataBankClients(FakeClients):
    def __init__(self, registry: DataBankRegistry) -> None:
        super().__init__()
        self.registry = registry  # type: ignore[assignment]
        self.referrals = DownReferrals()  # type: ignore[assignment]


@pytest.fixture
def bank(console_settings: Settings) -> Iterator[tuple[Flask, DataBankRegistry]]:
    settings = console_settings
    registry = DataBankRegistry()
    app = create_app(settings, clients_factory=lambda _t, _c: DataBankClients(registry))  # type: ignore[arg-type,return-value]
    yield app, registry


def page_of(client: FlaskClient, url: str) -> str:
    answer = client.get(url)
    assert answer.status_code == 200, answer.status_code
    return answer.get_data(as_text=True)


def test_filters_go_in_the_url_and_the_search_text_does_not(bank: Any) -> None:
    app, registry = bank
    client = signed_in(app)
    page = page_of(client, "/families?district=Тарногский район&category=sop&stage=bogus")
    assert registry.calls[-1] == {
        "q": None,
        "page": 1,
        "page_size": 25,
        "district": "Тарногский район",
        "category": "sop",
    }
    assert "F-000001" in page and "Группа риска" in page and "Сопровождение" in page
    assert "risk_group" not in page.replace('value="risk_group"', "")
    token = csrf(client, "/families")
    answer = client.post(
        "/families",
        data={"csrf_token": token, "q": "Смирнова 09.07.2016", "in_bank": "false"},
    )
    assert answer.status_code == 303
    location = answer.headers["Location"]
    assert "Смирнова" not in location and "2016" not in location
    assert location.startswith("/families?in_bank=false&s=")
    page = page_of(client, location)
    assert registry.calls[-1]["q"] == "Смирнова 09.07.2016"
    assert 'value="Смирнова 09.07.2016"' in page  # the box keeps what was typed
    next_page = re.search(r'href="(/families\?[^"]*page=2)"', page)
    assert next_page is not None and "s=" in next_page.group(1)
    page_of(client, next_page.group(1).replace("&amp;", "&"))
    assert registry.calls[-1]["q"] == "Смирнова 09.07.2016" and registry.calls[-1]["page"] == 2
    # another browser (another session) gets nothing from the key
    other = signed_in(app)
    page_of(other, location)
    assert registry.calls[-1]["q"] is None


def test_htmx_gets_the_results_only_and_the_url_to_push(bank: Any) -> None:
    app, _registry = bank
    client = signed_in(app)
    token = csrf(client, "/families")
    answer = client.post(
        "/families",
        data={"csrf_token": token, "q": "Yuriy", "stage": "support"},
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    assert "<html" not in body and "F-000001" in body
    assert answer.headers["HX-Push-Url"].startswith("/families?stage=support&s=")


def test_api_field_errors_show_next_to_the_search_box(bank: Any) -> None:
    app, _registry = bank
    client = signed_in(app)
    answer = client.post(
        "/families", data={"csrf_token": csrf(client, "/families"), "q": "31.02.2016"}
    )
    page = client.get(answer.headers["Location"])
    assert page.status_code == 422
    text = page.get_data(as_text=True)
    assert 'id="error-q"' in text and "нет такой даты" in text and 'aria-invalid="true"' in text


def test_a_registry_down_shows_a_message_where_the_table_goes(bank: Any) -> None:
    app, registry = bank
    registry.down = True
    page = page_of(signed_in(app), "/families")
    assert "Реестр семей: служба сейчас не отвечает" in page


def test_saved_views_are_per_person_and_keep_the_search(bank: Any) -> None:
    app, registry = bank
    client = signed_in(app)
    token = csrf(client, "/families")
    searched = client.post(
        "/families", data={"csrf_token": token, "q": "Щукина", "overdue": "true"}
    )
    key = searched.headers["Location"].split("s=")[1]
    saved = client.post(
        "/families/views",
        data={"csrf_token": token, "name": "Просроченные Щукины", "overdue": "true", "s": key},
    )
    assert saved.status_code == 303
    page = page_of(client, "/families")
    view = re.search(r'href="(/families/views/[^"]+)">Просроченные Щукины', page)
    assert view is not None
    opened = client.get(view.group(1))
    assert opened.status_code == 303 and "Щукина" not in opened.headers["Location"]
    page_of(client, opened.headers["Location"])
    assert registry.calls[-1]["q"] == "Щукина" and registry.calls[-1]["overdue"] == "true"
    someone_else = signed_in(app, "demo-inspector")
    assert "Просроченные Щукины" not in page_of(someone_else, "/families")
    assert someone_else.get(view.group(1)).status_code == 404
    view_id = view.group(1).rsplit("/", 1)[1]
    client.post(f"/families/views/{view_id}/delete", data={"csrf_token": token})
    assert "Просроченные Щукины" not in page_of(client, "/families")


def test_coordinators_see_the_export_buttons_and_get_the_file(bank: Any) -> None:
    app, registry = bank
    coordinator = signed_in(app)
    page = page_of(coordinator, "/families?category=sop")
    assert 'href="/families/export?category=sop&amp;format=csv"' in page
    answer = coordinator.get("/families/export?category=sop&format=csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert registry.exports[-1] == ("csv", {"q": None, "category": "sop"})
    inspector = signed_in(app, "demo-inspector")
    assert "/families/export" not in page_of(inspector, "/families")


def test_the_family_card_merges_one_timeline_and_survives_referrals_down(bank: Any) -> None:
    app, _registry = bank
    page = page_of(signed_in(app), "/families/fam-1")
    assert "Смирнов Артём" in page and "02.09.2013" in page and "Ребёнок" in page
    timeline = page.split('id="timeline-title"')[1]
    order = [
        timeline.index(day)
        for day in ("02.05.2026", "10.04.2026", "25.03.2026", "20.03.2026", "01.03.2026")
    ]
    assert order == sorted(order)  # newest first, across the case and the category history
    assert "Посещение в ходе рейда" in timeline and "Группа риска → СОП" in timeline
    assert "План: Утверждено" in timeline
    assert "Направления и сигналы: служба сейчас не отвечает" in timeline
    assert "Школа, ПДН" in page
    for code in ("raid_visit", "risk_group", "police_pdn", "approved"):
        assert code not in page


def test_the_address_form_corrects_the_address_and_shows_the_registry_field_errors(
    bank: Any,
) -> None:
    app, registry = bank
    client = signed_in(app)
    page = page_of(client, "/families/fam-1")
    form = page.split('id="address-title"')[1]
    assert 'name="settlement" type="text" value="с. Заречье"' in form
    assert 'name="latitude" type="text" value=""' in form
    key = re.search(r'name="idempotency_key" value="([^"]+)"', form)
    assert key
    typed = {
        "csrf_token": csrf(client, "/families/fam-1"),
        "idempotency_key": key.group(1),
        "district": "Тарногский район",
        "settlement": "д. Кокшеньга",
        "street": "Лесная",
        "house": "5",
        "flat": "",
        "latitude": "91",
        "longitude": "43,451",
    }
    answer = client.post("/families/fam-1/address", data=typed)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    latitude = page.split('<label for="field-latitude">')[1].split("</div>")[0]
    assert "Must be greater than or equal to -90." in latitude
    assert 'value="91"' in latitude and 'aria-invalid="true"' in latitude
    assert 'name="settlement" type="text" value="д. Кокшеньга"' in page
    assert registry.reports[-1]["address"]["longitude"] == "43.451"  # the decimal comma read
    assert registry.reports[-1]["address"]["region"] == "Вологодская область"
    assert registry.address["settlement"] == "с. Заречье"  # nothing changed
    new_key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert new_key and new_key.group(1) != key.group(1)

    answer = client.post(
        "/families/fam-1/address",
        data={**typed, "latitude": "60.542", "idempotency_key": new_key.group(1)},
    )
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/families/fam-1")
    assert registry.reports[-1]["key"] == new_key.group(1)
    page = page_of(client, "/families/fam-1")
    facts = page.split("</dl>")[0]
    assert "д. Кокшеньга, Лесная" in facts and "60.542, 43.451" in facts
    history = page.split('id="history-title"')[1]
    assert "с 07.12.2026: Тарногский район, д. Кокшеньга, Лесная, 5" in history

    inspector = signed_in(app, "demo-inspector")
    assert 'id="address-title"' not in page_of(inspector, "/families/fam-1")
    refused = inspector.post(
        "/families/fam-1/address", data={**typed, "csrf_token": csrf(inspector, "/families/fam-1")}
    )
    assert refused.status_code == 403


def test_registration_checks_first_keeps_what_was_typed_and_links(bank: Any) -> None:
    app, registry = bank
    client = signed_in(app)
    token = csrf(client, "/families/new")
    typed = {
        "csrf_token": token,
        "idempotency_key": "key-12345678",
        "category": "sop",
        "region": "Вологодская область",
        "district": "",
        "settlement": "д. Заречье",
        "member_0_role": "mother",
        "member_0_full_name": "Смирнова Елена",
        "member_0_birth_date": "1989-03-14",
        "member_2_role": "child",
        "member_2_full_name": "X",
    }
    checked = client.post("/families/new", data={**typed, "action": "check"})
    page = checked.get_data(as_text=True)
    assert "Семья F-000001" in page and "дата рождения члена семьи" in page and "дом" in page
    assert registry.reports[-1]["members"] == [
        {"role": "mother", "full_name": "Смирнова Елена", "birth_date": "1989-03-14"},
        {"role": "child", "full_name": "X", "birth_date": None},
    ]
    refused = client.post("/families/new", data={**typed, "action": "register"})
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    # the second member sent came from the third row: its error goes there
    assert 'id="error-member_2_full_name"' in page and "слишком короткое" in page
    assert 'id="error-district"' in page and 'value="Смирнова Елена"' in page
    linked = client.post("/families/new", data={**typed, "link_to": "fam-1"})
    assert linked.status_code == 303 and linked.headers["Location"] == "/families/fam-1"
    assert (
        registry.reports[-1]["link_to"] == "fam-1" and registry.reports[-1]["key"] == "key-12345678"
    )


def test_the_home_counter_of_possible_duplicates_opens_them_and_a_choice_resolves_one(
    bank: Any,
) -> None:
    app, registry = bank
    client = signed_in(app)
    opened = client.get("/families?intake=pending&district=Тарногский район")
    assert opened.status_code == 302 and opened.headers["Location"].startswith("/families/intakes?")
    page = page_of(client, opened.headers["Location"])
    assert registry.calls[-1] == {
        "intakes": {"state": "pending", "district": "Тарногский район", "page_size": 20}
    }
    assert "Морозова Анна, 03.02.2015" in page and "даты рождения детей" in page
    assert "Жёлтый (6 ч)" in page and "Это семья F-000001" in page
    token = csrf(client, "/families/intakes")
    done = client.post(
        "/families/intakes/in-1/resolve",
        data={"csrf_token": token, "family_id": "fam-1", "idempotency_key": "k-123456789"},
    )
    assert done.status_code == 303 and done.headers["Location"] == "/families/fam-1"
    assert registry.reports[-1] == {"resolve": "in-1", "family_id": "fam-1", "key": "k-123456789"}
    new = client.post(
        "/families/intakes/in-1/resolve", data={"csrf_token": token, "register": "true"}
    )
    assert (
        new.headers["Location"] == "/families/fam-new" and registry.reports[-1]["register"] is True
    )
