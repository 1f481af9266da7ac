"""The case workspace in a real browser (Debian's Chromium) over the real services in the
embedded mode, as README steps 3 and 7 tell it, by clicks: the specialist plans the support,
the coordinator approves it from the approvals inbox, the agencies answer (through their own
systems' API: their screens are not this test's), the specialist finishes the plan, records
the closing, and the coordinator's approval with the commission's decision reference takes the
family out of the data bank. axe-core finds no WCAG 2.1 AA violation on the workspace at each
stage, and a 360 px phone needs no sideways scrolling. Break-the-glass: the request, the
banner, the coordinator's list."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from console.conftest import ConsoleSystem
from shared.auth.tokens import issue_dev_token
from shared.config import load_settings

pytestmark = [pytest.mark.browser, pytest.mark.embedded]

NEXT_YEAR = dt.date.today().year + 1
SPECIALIST = "Ведущий специалист (демо)"
COORDINATOR = "Координатор (демо)"


class Api:
    """The services' APIs for what is not this screen's (registering the family, the agencies'
    answers), with development tokens of the demo people."""

    def __init__(self, system: ConsoleSystem) -> None:
        self.system = system
        self.settings = load_settings("registry", env=system.env)

    def call(
        self,
        service: str,
        method: str,
        path: str,
        who: tuple[str, str, str | None],
        body: Any = None,
        **params: Any,
    ) -> Any:
        subject, role, agency = who
        token = issue_dev_token(self.settings, subject=subject, roles=[role], agency_id=agency)
        answer = httpx.request(
            method,
            self.system.api(service) + path,
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None


SPEC = ("demo-specialist", "lead_specialist", "family-centre")
COORD = ("demo-coordinator", "coordinator", "family-centre")
POLICE = ("demo-inspector", "agency_staff", "tarnoga-pdn")
CHARITY = ("demo-volunteer", "agency_staff", "good-hands")


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, "not in time"
            return result
        time.sleep(0.3)


def sign_in(page: Any, system: ConsoleSystem, name: str, target: str) -> None:
    page.goto(system.url + target)
    page.get_by_role("button", name=name).click()
    page.wait_for_url(system.url + target)


def new_family(api: Api, surname: str) -> tuple[str, str, str]:
    """A family the school signalled and the coordinator registered (screens 2-3, not these)."""
    family = api.call(
        "registry",
        "POST",
        "/families",
        SPEC,
        {
            "category": "risk_group",
            "address": {
                "region": "Вологодская область",
                "district": "Тарногский район",
                "settlement": "с. Спасское",
                "street": "ул. Набережная",
                "house": "7",
            },
            "members": [
                {"role": "mother", "full_name": f"{surname}а Ирина Сергеевна"},
                {
                    "role": "child",
                    "full_name": f"{surname} Кирилл Андреевич",
                    "birth_date": "2013-05-12",
                },
            ],
        },
    )
    [case] = api.call("registry", "GET", f"/families/{family['id']}/cases", SPEC)
    return family["id"], family["number"], case["id"]


def submit(page: Any, form: str, button: str) -> None:
    page.locator(f"#{form}-form").get_by_role("button", name=button).click()


def open_details(page: Any, summary: str) -> None:
    page.locator("summary", has_text=summary).first.click()


def by_keyboard(page: Any, summary: str, first_field: str) -> None:
    """Tab reaches a form's disclosure, Enter opens it, the next Tab is on its first field."""
    page.locator("body").focus()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == summary:
            break
    else:
        raise AssertionError(f"Tab never reached {summary!r}")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == first_field
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # closed again, as it was


def phone_fits(page: Any) -> None:
    size = page.viewport_size
    page.set_viewport_size({"width": 360, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.set_viewport_size(size)


def test_the_specialist_plans_and_closes_the_support_and_the_coordinator_approves(
    page: Any, browser: Any, console_system: ConsoleSystem, axe: Any, screenshot: Any
) -> None:
    api = Api(console_system)
    family_id, number, case_id = new_family(api, "Морозов")
    workspace = f"/cases/{case_id}"
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, console_system, SPECIALIST, workspace)
    stage = page.locator("#stage")
    expect(stage).to_contain_text("соглашения с семьёй")
    expect(stage).to_contain_text("хотя бы одного мероприятия в плане")
    axe(page)
    phone_fits(page)
    by_keyboard(page, "Добавить проблему", "problem-code")

    # README step 3: problems and strengths
    for problem in ("Пропуски занятий", "Ненадлежащее исполнение родительских обязанностей"):
        open_details(page, "Добавить проблему")
        page.select_option("#problem-code", label=problem)
        submit(page, "problem", "Добавить")
        expect(page.locator("#findings .findings").first).to_contain_text(problem)
    open_details(page, "Добавить ресурс")
    page.select_option("#strength-code", label="Привязанность к детям")
    submit(page, "strength", "Добавить")
    expect(page.locator("#findings .findings").last).to_contain_text("Привязанность к детям")

    # the first assessment, eight domains
    open_details(page, "Записать оценку")
    first = {"housing": "3", "health": "3", "social_ties": "3"}
    for select in page.locator("#assessment-form select").all():
        domain = select.get_attribute("name").removeprefix("score_")
        select.select_option(first.get(domain, "2"))
    submit(page, "assessment", "Записать оценку")
    expect(page.locator("#assessments table")).to_contain_text("Жилищные условия")

    # the agreement, sharing with the police, the charity and health
    page.fill("#agreement-valid_until", f"{NEXT_YEAR}-12-31")
    for kind in ("ПДН", "Благотворительная организация", "Здравоохранение"):
        page.locator("#agreement-form").get_by_label(kind, exact=True).check()
    submit(page, "agreement", "Записать соглашение")
    expect(page.locator("#agreement dl")).to_contain_text("Благотворительная организация")
    expect(stage).not_to_contain_text("соглашения с семьёй")

    # a refusal (a deadline in the past) comes back next to its field, in place
    page.select_option("#measure-kind", label="Консультирование")
    page.fill("#measure-title", "Консультации психолога")
    page.fill("#measure-deadline", "2020-01-01")
    submit(page, "measure", "Добавить в план")
    expect(page.locator("#measure-deadline-error")).to_be_visible()
    axe(page)

    # three measures: counselling by the centre, a police check, material aid from the charity
    for kind, title, agency in (
        ("Консультирование", "Консультации психолога", None),
        (
            "Проверка инспектором ПДН",
            "Проверка условий инспектором ПДН",
            "ОМВД по Тарногскому району, ПДН (ПДН)",
        ),
        (
            "Материальная помощь",
            "Продуктовый набор и школьная одежда",
            "Благотворительный фонд «Добрые руки» (Благотворительная организация)",
        ),
    ):
        if not page.locator("#measure-form").is_visible():
            open_details(page, "Добавить мероприятие")
        page.select_option("#measure-kind", label=kind)
        page.fill("#measure-title", title)
        if agency:
            page.select_option("#measure-agency_id", label=agency)
        page.fill("#measure-deadline", f"{NEXT_YEAR}-01-31")
        submit(page, "measure", "Добавить в план")
        expect(page.locator("#plan .measures")).to_contain_text(title)
    assert page.locator("#plan .measure").count() == 3

    submit(page, "approval", "Отправить план на утверждение")
    expect(page.locator("#approvals")).to_contain_text("Ожидает решения")
    axe(page)

    # the coordinator approves from the inbox
    coordinator = browser.new_page()
    sign_in(coordinator, console_system, COORDINATOR, "/approvals")
    axe(coordinator)
    screenshot(coordinator, "approvals-inbox")
    coordinator.get_by_role("link", name=number).click()
    coordinator.locator("#approvals").get_by_label("Утвердить").check()
    coordinator.locator("#approvals").get_by_role("button", name="Принять решение").click()
    expect(coordinator.locator("#approvals")).to_contain_text("Утверждено")

    page.reload()
    expect(stage).to_contain_text("Всё готово для перехода к этапу «Сопровождение»")
    submit(page, "stage", "Перейти к этапу «Сопровождение»")
    expect(page.locator('#stage [aria-current="step"]')).to_have_text("Сопровождение")

    # README step 7: the agencies answer through their systems
    measures = api.call("registry", "GET", f"{workspace}/measures", SPEC)
    by_kind = {m["kind"]: m for m in measures}
    for kind, who, outcome in (
        ("pdn_check", POLICE, "Нарушений нет"),
        ("material_aid", CHARITY, "Набор и одежда переданы"),
    ):
        measure_id = by_kind[kind]["id"]
        referral = eventually(
            lambda m=measure_id: api.call("referrals", "GET", "/referrals", SPEC, measure_id=m)[
                "items"
            ]
        )[0]
        for status in ("received", "accepted", "in-progress"):
            api.call(
                "referrals",
                "POST",
                f"/referrals/{referral['id']}/transitions",
                who,
                {"status": status},
            )
        api.call(
            "referrals",
            "POST",
            f"/referrals/{referral['id']}/transitions",
            who,
            {"status": "completed", "outcome": outcome},
        )
    police = page.locator(f"#measure-{by_kind['pdn_check']['id']}")
    eventually(lambda: page.reload() or "Выполнено" in police.locator("dl").inner_text())
    expect(police).to_contain_text("Нарушений нет")
    expect(police).to_contain_text("ОМВД по Тарногскому району, ПДН")

    # the counselling is done, a new assessment shows improvement
    counselling = f"measure-{by_kind['counselling']['id']}"
    page.locator(f"#{counselling} summary").click()
    page.select_option(f"#{counselling}-status", label="Выполнено")
    page.fill(f"#{counselling}-result_note", "Три консультации")
    submit(page, counselling, "Сохранить")
    expect(page.locator(f"#{counselling}")).to_contain_text("Три консультации")
    open_details(page, "Записать оценку")
    for select in page.locator("#assessment-form select").all():
        domain = select.get_attribute("name").removeprefix("score_")
        select.select_option("3" if domain in first else "4")
    submit(page, "assessment", "Записать оценку")
    expect(page.locator("#assessments .chart__line")).to_have_count(9)
    expect(page.locator("#assessments table")).to_contain_text("+2")
    screenshot(page, "case-workspace")

    submit(page, "stage", "Перейти к этапу «Завершающий»")
    expect(page.locator('#stage [aria-current="step"]')).to_have_text("Завершающий")
    page.fill("#closing-analysis", "Посещаемость восстановлена, условия улучшились")
    page.select_option("#closing-outcome", label="Улучшение")
    submit(page, "closing", "Сохранить итоги")
    expect(page.locator("#closing dl")).to_contain_text("Улучшение")
    submit(page, "approval", "Отправить закрытие на утверждение")
    expect(page.locator("#approvals")).to_contain_text("Ожидает решения")
    axe(page)
    phone_fits(page)

    # the commission's decision closes the case: the family leaves the data bank
    coordinator.goto(console_system.url + "/approvals")
    coordinator.get_by_role("link", name=number).click()
    form = coordinator.locator("#approvals form").first
    form.get_by_label("Утвердить").check()
    form.get_by_label("Реквизиты решения (номер постановления КДН и ЗП)").fill(
        "Постановление КДН и ЗП № 14/2"
    )
    form.get_by_role("button", name="Принять решение").click()
    expect(coordinator.locator("#closing")).to_contain_text("Постановление КДН и ЗП № 14/2")
    expect(coordinator.locator('#stage [aria-current="step"]')).to_have_text("Закрыт")
    axe(coordinator)
    coordinator.set_viewport_size({"width": 360, "height": 740})
    assert coordinator.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(coordinator, "case-closed-phone")
    family = api.call("registry", "GET", f"/families/{family_id}", COORD)
    assert family["in_bank"] is False and family["stage"] == "closed"
    assert errors == []


def test_a_refused_form_shows_the_error_next_to_its_field_without_javascript(
    browser: Any, console_system: ConsoleSystem
) -> None:
    api = Api(console_system)
    _family, _number, case_id = new_family(api, "Лебедев")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, console_system, SPECIALIST, f"/cases/{case_id}")
    assert page.locator("#measure-form").is_visible()  # an empty plan shows its form open
    page.select_option("#measure-kind", label="Консультирование")
    page.fill("#measure-title", "Консультации психолога")
    page.fill("#measure-deadline", "2020-01-01")
    submit(page, "measure", "Добавить в план")
    expect(page.locator("#measure-deadline-error")).to_be_visible()
    expect(page.locator("#measure-title")).to_have_value("Консультации психолога")
    expect(page.locator("#measure-errors")).to_contain_text("Срок:")
    context.close()


def test_break_the_glass_shows_a_banner_and_the_coordinator_sees_the_grant(
    browser: Any, console_system: ConsoleSystem, axe: Any
) -> None:
    api = Api(console_system)
    family_id, number, _case = new_family(api, "Орлов")
    inspector = browser.new_page()
    sign_in(inspector, console_system, "Инспектор ПДН (демо)", f"/families/{family_id}/break-glass")
    axe(inspector)
    inspector.get_by_label("Причина").fill("Вызов 112: ребёнок один дома, нужен телефон матери")
    inspector.get_by_label("На сколько минут").fill("20")
    inspector.get_by_role("button", name="Получить доступ").click()
    inspector.goto(console_system.url + "/")
    banner = inspector.locator(".banner-glass")
    expect(banner).to_contain_text(f"Экстренный доступ к данным семьи {number}")
    axe(inspector)

    coordinator = browser.new_page()
    sign_in(coordinator, console_system, COORDINATOR, "/access/grants?active=true")
    row = coordinator.locator("tr", has_text=number)
    expect(row).to_contain_text("Инспектор ПДН (демо)")
    expect(row).to_contain_text("Вызов 112")
    axe(coordinator)
    row.get_by_role("button", name="Завершить").click()
    expect(coordinator.locator("tr", has_text=number)).to_have_count(0)  # no longer in force
    coordinator.goto(console_system.url + "/access/grants?active=false")
    expect(coordinator.locator("tr", has_text=number)).to_contain_text("Завершён")
    inspector.reload()
    expect(inspector.locator(".banner-glass")).to_have_count(0)
