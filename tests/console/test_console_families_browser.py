"""The data bank in a real browser (Debian's Chromium) over the real services in the embedded
mode: a coordinator finds the demo's Кузнецов family by a child's name typed in Latin, by a
typo and by a birth date, with htmx and with JavaScript off; exports the list; saves a view.
axe-core finds no WCAG 2.1 AA violation; a 360 px phone needs no sideways scrolling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from console.conftest import ConsoleSystem

pytestmark = [pytest.mark.browser, pytest.mark.embedded]


def sign_in(page: Any, system: ConsoleSystem, name: str = "Координатор (демо)") -> None:
    page.goto(system.url + "/sign-in")
    page.get_by_role("button", name=name).click()
    page.wait_for_url(system.url + "/")


def results(page: Any) -> str:
    text: str = page.locator("#results").inner_text()
    return text


def test_coordinator_searches_the_data_bank_exports_and_saves_a_view(
    page: Any, console_system: ConsoleSystem, axe: Any
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, console_system)
    page.get_by_role("link", name="Семьи").click()
    page.wait_for_url(console_system.url + "/families")
    assert page.locator("h1").inner_text() == "Банк данных семей"
    assert "Найдено семей" in results(page)
    axe(page)

    search = page.get_by_label("Поиск")
    search.fill("Darya")  # Кузнецова Дарья, a child, typed in Latin
    search.press("Enter")
    expect(page.locator("#results")).to_contain_text("Найдено семей: 1")
    assert "Кузнецов" in results(page) and "Смирнова" not in results(page)
    assert "Darya" not in page.url and "s=" in page.url  # the name stays out of the URL
    axe(page)

    search.fill("Кузнецва")  # a typo
    expect(page.locator("#results")).to_contain_text("Найдено семей: 1")
    assert "Кузнецов" in results(page)
    search.fill("19.01.2016")  # Дарья's birth date
    expect(page.locator("#results")).not_to_contain_text("Смирнова")
    expect(page.locator("#results")).to_contain_text("Кузнецов")

    with page.expect_download() as download:
        page.get_by_role("link", name="Выгрузить CSV").click()
    content = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert content.startswith("Номер,Семья,Категория") and "Кузнецов" in content

    page.get_by_label("Название вида").fill("Дети 2016 года")
    page.get_by_role("button", name="Сохранить текущие фильтры").click()
    page.get_by_role("link", name="Дети 2016 года").click()
    page.wait_for_url("**/families?s=*")
    assert page.get_by_label("Поиск").input_value() == "19.01.2016"
    assert errors == []


def test_the_data_bank_works_with_javascript_off_and_on_a_phone(
    browser: Any, console_system: ConsoleSystem, axe: Any
) -> None:
    context = browser.new_context(java_script_enabled=False, viewport={"width": 360, "height": 740})
    page = context.new_page()
    try:
        sign_in(page, console_system, "Ведущий специалист (демо)")
        page.goto(console_system.url + "/families")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.get_by_label("Поиск").fill("Popova")
        page.get_by_label("Этап").select_option(label="Подготовительный")
        page.get_by_role("button", name="Показать").click()
        page.wait_for_url("**/families?stage=preparatory&s=*")
        assert "Попова" in results(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        assert page.get_by_role("link", name="Выгрузить CSV").count() == 0  # coordinators only
    finally:
        context.close()
    phone = browser.new_context(viewport={"width": 360, "height": 740})
    page = phone.new_page()
    try:
        sign_in(page, console_system)
        page.goto(console_system.url + "/families")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        axe(page)
    finally:
        phone.close()


def test_the_family_card_shows_members_history_and_one_timeline(
    browser: Any, console_system: ConsoleSystem, axe: Any
) -> None:
    for viewport in ({"width": 1280, "height": 900}, {"width": 360, "height": 740}):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        try:
            sign_in(page, console_system)
            page.goto(console_system.url + "/families")
            row = page.locator("#results tr", has_text="Смирнова")
            row.get_by_role("link").first.click()
            page.wait_for_url("**/families/*")
            assert page.locator("h1").inner_text().startswith("Семья ")
            members = page.locator("table", has_text="Члены семьи").inner_text()
            assert "Смирнов Артём Сергеевич" in members and "Ребёнок" in members
            assert "02.09.2013" in members
            timeline = page.locator("ol.timeline").inner_text()
            assert "Случай открыт" in timeline and "Категория" in timeline
            assert "sop" not in timeline and "risk_group" not in timeline
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            axe(page)
        finally:
            context.close()


def test_registering_searches_first_and_links_the_same_family(
    page: Any, console_system: ConsoleSystem, axe: Any
) -> None:
    sign_in(page, console_system)
    page.goto(console_system.url + "/families")
    page.get_by_role("link", name="Поставить семью на учёт").click()
    page.wait_for_url("**/families/new")
    axe(page)
    page.get_by_label("Район").fill("Тарногский район")
    page.get_by_label("Населённый пункт").fill("д. Заречье")
    first = page.get_by_role("group", name="Член семьи 1")
    first.get_by_label("Роль").select_option(label="Отец")
    first.get_by_label("Фамилия Имя Отчество").fill("Kuznetsov Andrei Petrovich")
    first.get_by_label("Дата рождения").fill("1984-06-30")
    second = page.get_by_role("group", name="Член семьи 2")
    second.get_by_label("Фамилия Имя Отчество").fill("Кузнецова Дарья")
    second.get_by_label("Дата рождения").fill("2016-01-19")
    page.get_by_role("button", name="Поставить на учёт").click()  # no category yet
    assert page.locator("#error-summary").is_visible()
    assert page.locator("#error-category").is_visible()
    assert first.get_by_label("Фамилия Имя Отчество").input_value() == "Kuznetsov Andrei Petrovich"
    axe(page)
    page.get_by_label("Категория").select_option(label="СОП")
    page.get_by_role("button", name="Проверить, нет ли семьи в банке").click()
    candidates = page.locator(".candidate")
    assert candidates.count() >= 1
    kuznetsov = candidates.first.inner_text()
    assert "дата рождения члена семьи" in kuznetsov and "даты рождения детей" in kuznetsov
    axe(page)
    candidates.first.get_by_role("button").click()
    page.wait_for_url("**/families/*")
    members = page.locator("table", has_text="Члены семьи").inner_text()
    assert "Кузнецов Андрей Петрович" in members


def test_possible_duplicates_from_the_home_counter(
    page: Any, console_system: ConsoleSystem, axe: Any
) -> None:
    sign_in(page, console_system)
    page.locator("#panel-intakes .counter").click()
    page.wait_for_url("**/families/intakes*")
    assert page.locator("h1").inner_text() == "Возможные дубли к решению"
    axe(page)
