"""The README's story, steps 1-4 and 7-8, entirely in the browser in the embedded mode (the
``console_system`` fixture): the school's system posts the signal with its API key (a system,
not a person); the coordinator triages it and names the lead specialist; the specialist plans
the support in the case workspace and the coordinator approves it; the police inspector
answers the police referral on the referrals pages and the charity's volunteer through the
signed link of the email delivered to them; the referrals are completed, the case is closed
with the commission's decision, the regional office sees the statistics and an admin the
family's audit trail. Every page this story adds is checked with axe-core; then every link of
every email and SMS delivered to the story's people opens a working page for its recipient.

Left out, as the README's story has them outside the console: steps 5-6 (the raid) and so the
clinic's FHIR referral of step 7."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from console.conftest import ConsoleSystem
from console.test_console_casework_browser import (
    COORDINATOR,
    NEXT_YEAR,
    SPECIALIST,
    eventually,
    open_details,
    sign_in,
    submit,
)
from shared import demo

pytestmark = [pytest.mark.browser, pytest.mark.embedded]

INSPECTOR = "Инспектор ПДН (демо)"
SURNAME = "Соколова"
OBSERVED = "Ученик 6 класса третью неделю не ходит в школу, признаки безнадзорности"
LINK = re.compile(r"https?://[^\s<>\"']+")


def reloaded(page: Any, check: Any) -> Any:
    """``check()`` after a reload (events travel between the services in the background). A
    reload that meets a navigation still under way is tried again by ``eventually``."""
    try:
        page.reload()
    except PlaywrightError:
        return False
    return check()


def school_key(system: ConsoleSystem) -> str:
    keys = dict(
        line.split("=", 1)
        for line in (system.data_dir / "demo-keys.txt").read_text().splitlines()
        if "=" in line
    )
    return keys["SCHOOL_KEY"]


def delivered_mail(system: ConsoleSystem) -> list[email.message.EmailMessage]:
    folder = system.data_dir / "mail"
    return [
        email.message_from_binary_file(path.open("rb"), policy=email.policy.default)  # type: ignore[misc]
        for path in sorted(folder.glob("*.eml"))
    ]


def text_of(message: email.message.EmailMessage) -> str:
    body = message.get_body(("plain", "html"))
    return body.get_content() if body is not None else ""


def volunteer_link(system: ConsoleSystem, number: str) -> str:
    """The signed link of the email delivered to the volunteer about this referral."""

    def find() -> str | None:
        for message in delivered_mail(system):
            body = text_of(message)
            if "good-hands" in str(message["To"]) and number in str(message["Subject"]) + body:
                for url in LINK.findall(body):
                    if "/respond?token=" in url:
                        return url
        return None

    link: str = eventually(find, timeout=40)
    return link


def test_the_readme_story_by_clicks(
    page: Any, browser: Any, console_system: ConsoleSystem, axe: Any
) -> None:
    system = console_system
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # 1. the school's system signals the pupil (an API key: a system, not a person)
    answer = httpx.post(
        system.api("referrals") + "/signals",
        headers={"X-Api-Key": school_key(system)},
        json={
            "district": "Тарногский район",
            "priority": "amber",
            "observed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "observed": OBSERVED,
            "family": {
                "surname": SURNAME,
                "display_name": f"{SURNAME} Ирина Сергеевна",
                "address": "ул. Лесная, д. 3",
                "settlement": "с. Спасское",
                "children": [{"name": "Соколов Кирилл Андреевич", "birth_date": "2014-03-09"}],
            },
        },
        timeout=10,
    )
    assert answer.status_code == 201, answer.text

    # 2. the coordinator triages it: accept, the registry registers the family; the lead
    coordinator = page
    sign_in(coordinator, system, COORDINATOR, "/signals?status=new&priority=amber")
    row = coordinator.locator("tr", has_text=OBSERVED[:40])
    expect(row.locator(".countdown--amber, .countdown--red")).to_be_visible()
    axe(coordinator)
    row.get_by_role("link").click()
    expect(coordinator.locator("#signal-observed")).to_have_text(OBSERVED)
    # the registry's duplicate check took the family as the signal reports it (no refusal)
    expect(coordinator.locator("#candidates-title")).to_be_visible()
    expect(coordinator.locator("#candidates .notice")).to_have_count(0)
    axe(coordinator)
    with coordinator.expect_navigation():  # the form's answer, before any reload
        coordinator.get_by_role("button", name="Принять сигнал").click()
    eventually(
        lambda: reloaded(coordinator, lambda: coordinator.locator("#case-link").count() == 1)
    )
    expect(coordinator.locator("#intake-state")).to_contain_text("Семья поставлена на учёт")
    coordinator.select_option("#lead-specialist", value="demo-specialist")
    coordinator.get_by_role("button", name="Назначить ведущего специалиста").click()
    expect(coordinator.locator("#lead-done")).to_be_visible()
    axe(coordinator)
    workspace = coordinator.locator("#case-link").get_attribute("href")
    family_id = coordinator.locator("#family-link").get_attribute("href").split("/")[2]
    assert workspace and workspace.startswith("/cases/")
    # ... and adds the coordinates the school did not know, on the family card
    coordinator.goto(f"{system.url}/families/{family_id}")
    coordinator.get_by_label("Широта").fill("60.542")
    coordinator.get_by_label("Долгота").fill("43.451")
    coordinator.get_by_role("button", name="Сохранить адрес").click()
    expect(coordinator.locator("dl.facts")).to_contain_text("60.542, 43.451")
    expect(coordinator.get_by_label("Населённый пункт")).to_have_value("с. Спасское")
    axe(coordinator)

    # 3. the specialist plans the support in the case workspace; the coordinator approves
    specialist = browser.new_page()
    sign_in(specialist, system, SPECIALIST, workspace)
    for problem in ("Пропуски занятий", "Ненадлежащее исполнение родительских обязанностей"):
        open_details(specialist, "Добавить проблему")
        specialist.select_option("#problem-code", label=problem)
        submit(specialist, "problem", "Добавить")
        expect(specialist.locator("#findings .findings").first).to_contain_text(problem)
    open_details(specialist, "Добавить ресурс")
    specialist.select_option("#strength-code", label="Привязанность к детям")
    submit(specialist, "strength", "Добавить")
    expect(specialist.locator("#findings .findings").last).to_contain_text("Привязанность")
    assess(specialist, "2")
    specialist.fill("#agreement-valid_until", f"{NEXT_YEAR}-12-31")
    for kind in ("ПДН", "Благотворительная организация", "Здравоохранение"):
        specialist.locator("#agreement-form").get_by_label(kind, exact=True).check()
    submit(specialist, "agreement", "Записать соглашение")
    expect(specialist.locator("#agreement dl")).to_contain_text("Здравоохранение")
    for kind, title, agency in (
        ("Консультирование", "Консультации психолога", None),
        ("Проверка инспектором ПДН", "Проверка условий инспектором ПДН", "ПДН (ПДН)"),
        ("Материальная помощь", "Продуктовый набор и школьная одежда", "«Добрые руки»"),
    ):
        if not specialist.locator("#measure-form").is_visible():
            open_details(specialist, "Добавить мероприятие")
        specialist.select_option("#measure-kind", label=kind)
        specialist.fill("#measure-title", title)
        if agency:
            option = specialist.locator("#measure-agency_id option", has_text=agency).first
            specialist.select_option("#measure-agency_id", value=option.get_attribute("value"))
        specialist.fill("#measure-deadline", f"{NEXT_YEAR}-01-31")
        submit(specialist, "measure", "Добавить в план")
        expect(specialist.locator("#plan .measures")).to_contain_text(title)
    submit(specialist, "approval", "Отправить план на утверждение")
    expect(specialist.locator("#approvals")).to_contain_text("Ожидает решения")
    number = decide(coordinator, system, workspace)
    specialist.reload()
    submit(specialist, "stage", "Перейти к этапу «Сопровождение»")
    expect(specialist.locator('#stage [aria-current="step"]')).to_have_text("Сопровождение")

    # 4. the police inspector accepts the police referral; the volunteer by the emailed link
    inspector = browser.new_page()
    sign_in(inspector, system, INSPECTOR, "/referrals?box=inbox&status=requested")
    police = inspector.locator("tr", has_text="Проверка инспектором ПДН")
    eventually(lambda: reloaded(inspector, lambda: police.count() > 0))
    axe(inspector)
    police.first.get_by_role("link").click()
    axe(inspector)
    inspector.get_by_role("button", name="Взять в работу себе").click()
    expect(inspector.locator("#referral-owner")).to_have_text(INSPECTOR)
    inspector.get_by_role("button", name="Принять").click()
    expect(inspector.locator("#referral-status")).to_have_text("Принято")
    inspector.fill("#comment-body", "Выезд на этой неделе")
    inspector.get_by_role("button", name="Добавить комментарий").click()
    expect(inspector.locator("#comments")).to_contain_text("Выезд на этой неделе")
    axe(inspector)

    charity_number = referral_number(coordinator, system, "Материальная помощь")
    link = volunteer_link(system, charity_number)
    volunteer = browser.new_context().new_page()  # not signed in: the link is its sign-in
    volunteer.goto(link)
    expect(volunteer.locator("h1")).to_contain_text(charity_number)
    assert "Соколов" not in volunteer.content()  # the referral, never the family file
    axe(volunteer)
    volunteer.set_viewport_size({"width": 360, "height": 740})  # a volunteer's phone
    assert volunteer.evaluate("document.documentElement.scrollWidth") <= 360
    volunteer.get_by_role("button", name="Принять направление").click()
    expect(volunteer.locator("#answer-done")).to_be_visible()
    expect(volunteer.locator("#referral-status")).to_have_text("Принято")
    axe(volunteer)

    # 7. the referrals are completed, the counselling done, a new assessment, the closing
    inspector.get_by_role("button", name="Начать работу").click()
    expect(inspector.locator("#referral-status")).to_have_text("В работе")
    inspector.get_by_role("button", name="Отметить выполнение").click()  # without an outcome
    expect(inspector.locator("#step-completed-outcome-error")).to_be_visible()
    inspector.fill("#step-completed-outcome", "Нарушений нет")
    inspector.get_by_role("button", name="Отметить выполнение").click()
    expect(inspector.locator("#referral-status")).to_have_text("Выполнено")
    volunteer.fill("#answer-outcome", "Набор и одежда переданы")
    volunteer.get_by_role("button", name="Сообщить о выполнении").click()
    expect(volunteer.locator("#referral-status")).to_have_text("Выполнено")
    expect(volunteer.locator("#no-actions")).to_be_visible()

    specialist.reload()
    counselling = specialist.locator(".measure", has_text="Консультации психолога")
    measure_id = counselling.get_attribute("id")
    specialist.locator(f"#{measure_id} summary").click()
    specialist.select_option(f"#{measure_id}-status", label="Выполнено")
    specialist.fill(f"#{measure_id}-result_note", "Три консультации")
    submit(specialist, measure_id, "Сохранить")
    expect(specialist.locator(f"#{measure_id}")).to_contain_text("Три консультации")
    assess(specialist, "4")
    done = lambda: specialist.locator("#plan").inner_text().count("Выполнено") >= 3  # noqa: E731
    eventually(lambda: reloaded(specialist, done))
    submit(specialist, "stage", "Перейти к этапу «Завершающий»")
    expect(specialist.locator('#stage [aria-current="step"]')).to_have_text("Завершающий")
    specialist.fill("#closing-analysis", "Посещаемость восстановлена, условия улучшились")
    specialist.select_option("#closing-outcome", label="Улучшение")
    submit(specialist, "closing", "Сохранить итоги")
    expect(specialist.locator("#closing dl")).to_contain_text("Улучшение")
    submit(specialist, "approval", "Отправить закрытие на утверждение")
    expect(specialist.locator("#approvals")).to_contain_text("Ожидает решения")
    decide(coordinator, system, workspace, "Постановление КДН и ЗП № 14/2")
    expect(coordinator.locator('#stage [aria-current="step"]')).to_have_text("Закрыт")

    coordinator.goto(system.url + "/referrals/overdue")
    expect(coordinator.locator("h1")).to_have_text("Просроченные направления и эскалации")
    axe(coordinator)
    stranger = browser.new_context().new_page()  # a link whose token is not the referral's
    gone = stranger.goto(link.split("?token=")[0] + "?token=" + "x" * 40)
    assert gone is not None and gone.status == 410
    expect(stranger.locator("h1")).to_have_text("Ссылка больше не действует")
    axe(stranger)

    # 8. the regional office's statistics, an admin's audit trail of the family
    region = browser.new_context().new_page()
    sign_in(region, system, "Региональный офис (демо)", "/statistics")
    region.fill("#filter-district", "Тарногский район")
    region.get_by_role("button", name="Показать").click()
    expect(region.locator("table")).to_contain_text(time.strftime("%Y"))
    chart = region.request.get(system.url + region.locator("img.stats-chart").get_attribute("src"))
    assert chart.status == 200 and chart.body().startswith(b"\x89PNG"), chart.status
    region.wait_for_function(
        "() => { const i = document.querySelector('img.stats-chart');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    axe(region)
    admin = browser.new_context().new_page()
    sign_in(admin, system, "Администратор (демо)", "/audit?family_id=" + family_id)
    expect(admin.locator("table")).to_contain_text("demo-specialist")
    axe(admin)
    assert number and errors == []

    # every link of every email and SMS the story sent opens a page for its recipient
    every_link_opens(browser, system)


def assess(page: Any, score: str) -> None:
    open_details(page, "Записать оценку")
    for select in page.locator("#assessment-form select").all():
        select.select_option(score)
    submit(page, "assessment", "Записать оценку")
    expect(page.locator("#assessments table")).to_contain_text("Жилищные условия")


def decide(page: Any, system: ConsoleSystem, workspace: str, ref: str | None = None) -> str:
    """The coordinator approves the case's waiting request from the approvals inbox."""
    page.goto(system.url + "/approvals")
    row = page.locator("tr", has=page.locator(f"a[href^='{workspace}']"))
    number: str = row.get_by_role("link").inner_text()
    row.get_by_role("link").click()
    form = page.locator("#approvals form").first
    form.get_by_label("Утвердить").check()
    if ref:
        form.get_by_label("Реквизиты решения (номер постановления КДН и ЗП)").fill(ref)
    form.get_by_role("button", name="Принять решение").click()
    expect(page.locator("#approvals")).to_contain_text("Утверждено")
    return number


def referral_number(page: Any, system: ConsoleSystem, service: str) -> str:
    """The coordinator finds the referral in the sent list (the charity's, for the link)."""
    page.goto(system.url + "/referrals?box=sent&status=requested")
    row = page.locator("tr", has_text=service).first
    number: str = row.get_by_role("link").inner_text()
    return number


def every_link_opens(browser: Any, system: ConsoleSystem) -> None:
    """Read what was delivered (mail and SMS in the data folder: the links are there, not in
    the API's views), and open each link as its recipient: 200, an h1, no error page."""
    contacts = [c for agency in demo.AGENCIES for c in agency["contacts"]]
    people = {c["person_id"]: c["name"] for c in contacts if c["person_id"] != "demo-volunteer"}
    by_email = {c["email"]: c["person_id"] for c in contacts}
    by_phone = {re.sub(r"\D", "", c["phone"])[-10:]: c["person_id"] for c in contacts}
    found: list[tuple[str | None, str]] = []
    for message in delivered_mail(system):
        person = next((p for e, p in by_email.items() if e in str(message["To"])), None)
        recipient = person if person in people else None
        found += [(recipient, url) for url in LINK.findall(text_of(message))]
    for path in sorted((system.data_dir / "sms").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            sms = json.loads(line)
            person = by_phone.get(re.sub(r"\D", "", sms["to"])[-10:])
            recipient = person if person in people else None
            found += [(recipient, url) for url in LINK.findall(sms["text"])]
    urls = {url for _recipient, url in found}
    assert any("/respond?token=" in u for u in urls), urls  # the volunteer's
    assert any("/cases/" in u for u in urls), urls  # the lead specialist's assignment
    pages: dict[str | None, Any] = {}
    for recipient, url in sorted(set(found), key=lambda f: (f[0] or "", f[1])):
        url = url.rstrip(".,;)")
        if recipient not in pages:
            pages[recipient] = browser.new_context().new_page()
            if recipient:
                sign_in(pages[recipient], system, people[recipient], "/")
        page = pages[recipient]
        if url.endswith(".ics") or "calendar.ics" in url:
            answer = page.request.get(url)
            assert answer.status == 200 and b"BEGIN:VCALENDAR" in answer.body(), url
            continue
        answer = page.goto(url)
        assert answer is not None and answer.status == 200, (url, answer and answer.status)
        expect(page.locator("h1")).to_have_count(1)
        assert "Ошибка" not in page.locator("h1").inner_text(), url
