"""The console in a real browser (Debian's Chromium) over the real services in the embedded
mode: sign-in, the home page's counters, keyboard use, a phone's width, a service down, the
security headers; axe-core finds no WCAG 2.1 AA violation on any page visited."""

from __future__ import annotations

from typing import Any

import pytest

from console.conftest import ConsoleSystem

pytestmark = [pytest.mark.browser, pytest.mark.embedded]


def sign_in(page: Any, system: ConsoleSystem, name: str) -> None:
    page.goto(system.url + "/")
    assert "/sign-in" in page.url
    page.get_by_role("button", name=name).click()
    page.wait_for_url(system.url + "/")


def test_coordinator_signs_in_and_sees_what_needs_them(
    page: Any, console_system: ConsoleSystem, axe: Any, screenshot: Any
) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(console_system.url + "/")
    assert page.locator("h1").inner_text() == "Вход в Опору"
    axe(page)
    screenshot(page, "sign-in")
    page.get_by_role("button", name="Координатор (демо)").click()
    page.wait_for_url(console_system.url + "/")
    assert page.locator("h1").inner_text() == "Что требует внимания"
    person = page.locator("#person").inner_text()
    assert "Координатор (демо)" in person
    assert "КЦСОН Тарногского района" in person
    signals = page.locator("#panel-signals")
    assert signals.get_by_role("link", name="Сигналы к разбору: Красный (2 ч)").count() == 1
    assert page.locator("#panel-intakes .counter").count() == 1
    assert page.locator("#panel-approvals .counter").count() == 1
    assert page.locator("#panel-raids .counter").count() == 1
    overdue = page.locator("#panel-overdue-referrals")
    assert overdue.locator(".counter").count() == 2
    assert overdue.locator('a[href="/referrals?view=escalated"]').count() == 1
    axe(page)
    screenshot(page, "home-coordinator")
    # htmx (served by the console itself, allowed by the CSP) refreshes the counters in place
    with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true") as answer:
        page.evaluate("htmx.trigger('#panels', 'refresh')")
    assert answer.value.status == 200
    page.wait_for_selector("#panels #panel-signals .counter")
    page.locator("#panel-raids a.counter").first.click()  # tomorrow's raids: that day's list
    page.wait_for_url("**/raids?*")
    assert page.locator("h1").inner_text().startswith("Рейды на ")
    axe(page)
    assert errors == []


def test_headers_say_no_store_and_allow_no_inline_script(
    page: Any, console_system: ConsoleSystem
) -> None:
    sign_in(page, console_system, "Ведущий специалист (демо)")
    answer = page.request.get(console_system.url + "/")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert answer.headers["cache-control"] == "no-store"


def test_keyboard_reaches_the_menu_and_sign_out(page: Any, console_system: ConsoleSystem) -> None:
    sign_in(page, console_system, "Инспектор ПДН (демо)")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent.trim()")
    assert focused == "Перейти к содержанию"
    reached = []
    for _ in range(15):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
        if reached[-1] == "Выйти":
            break
    assert "Направления" in reached and "Рейды" in reached, reached
    assert reached[-1] == "Выйти", reached
    page.keyboard.press("Enter")
    page.wait_for_url("**/sign-in")
    assert "Вы вышли из системы." in page.content()


def test_a_phone_360_px_wide_needs_no_sideways_scrolling(
    page: Any, console_system: ConsoleSystem, axe: Any, screenshot: Any
) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(console_system.url + "/sign-in")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    sign_in(page, console_system, "Координатор (демо)")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    axe(page)
    screenshot(page, "home-phone")


def test_a_service_down_empties_only_its_panel(
    page: Any, console_system: ConsoleSystem, axe: Any
) -> None:
    sign_in(page, console_system, "Координатор (демо)")
    processes = console_system.processes
    processes.crash("raids-web")
    try:
        page.reload()
        raids = page.locator("#panel-raids")
        assert "Рейды: служба сейчас не отвечает" in raids.inner_text()
        assert page.locator("#panel-signals .counter").count() == 3
        axe(page)
    finally:
        processes.recover("raids-web")
        processes.wait_ready(["raids"])


def test_english_and_the_error_pages_are_accessible_too(
    page: Any, console_system: ConsoleSystem, axe: Any
) -> None:
    sign_in(page, console_system, "Ведущий специалист (демо)")
    page.get_by_role("button", name="English").click()
    page.wait_for_url(console_system.url + "/")
    assert page.locator("h1").inner_text() == "What needs me"
    assert page.locator("html").get_attribute("lang") == "en"
    axe(page)
    answer = page.goto(console_system.url + "/no-such-page")
    assert answer is not None and answer.status == 404
    assert page.locator("h1").inner_text() == "Page not found"
    axe(page)
    page.get_by_role("button", name="Русский").click()
    assert page.locator("h1").inner_text() == "Страница не найдена"


def test_calendar_links_open_on_the_console(page: Any, console_system: ConsoleSystem) -> None:
    """The raids service's feed link names the console (the public URL); the console serves the
    feed from the raids API without a sign-in (calendar apps have none), and a wrong token
    shows nothing."""
    import httpx

    from shared.auth.tokens import issue_dev_token
    from shared.config import load_settings

    token = issue_dev_token(
        load_settings("raids", env=console_system.env),
        subject="demo-specialist",
        roles=["lead_specialist"],
        agency_id="family-centre",
    )
    feed = httpx.get(
        console_system.api("raids") + "/people/demo-specialist/feed-url",
        headers={"Authorization": f"Bearer {token}"},
    ).json()["url"]
    assert feed.startswith(console_system.url + "/people/demo-specialist/calendar.ics?token=")
    answer = page.request.get(feed)
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/calendar")
    assert answer.text().startswith("BEGIN:VCALENDAR")
    assert page.request.get(feed[:-3] + "xyz").status == 404
    sign_in(page, console_system, "Ведущий специалист (демо)")
    missing = page.goto(console_system.url + "/raids/no-such-raid.ics")
    assert missing is not None and missing.status == 404


def test_an_sms_short_link_opens_the_console_page_it_is_about(
    page: Any, console_system: ConsoleSystem
) -> None:
    """A red signal: the coordinator's SMS carries <console>/r/<code>, which the console
    resolves through the notifications API to the signal's page on the console."""
    import datetime as dt
    import re
    import time

    import httpx

    from shared import demo
    from shared.auth.tokens import issue_dev_token
    from shared.config import load_settings

    keys = demo.read_keys(console_system.data_dir / demo.KEYS_FILE)
    signal = httpx.post(
        console_system.api("referrals") + "/signals",
        headers={"X-Api-Key": keys["SCHOOL_KEY"]},
        json={
            "district": demo.DISTRICT,
            "priority": "red",
            "observed_at": dt.datetime.now(dt.UTC).isoformat(),
            "observed": "Ребёнок один дома без еды",
            "family": {"surname": "Тестова", "settlement": "с. Спасское"},
        },
    )
    assert signal.status_code == 201, signal.text
    admin = issue_dev_token(
        load_settings("notifications", env=console_system.env), subject="admin", roles=["admin"]
    )
    headers = {"Authorization": f"Bearer {admin}"}
    notifications = console_system.api("notifications")
    short = None
    deadline = time.monotonic() + 60
    while short is None and time.monotonic() < deadline:
        listed = httpx.get(
            notifications + "/messages",
            params={"recipient_id": "demo-coordinator", "channel": "sms"},
            headers=headers,
        ).json()["items"]
        for message in listed:
            text = httpx.get(f"{notifications}/messages/{message['id']}", headers=headers).json()
            found = re.search(re.escape(console_system.url) + r"/r/\w+", text.get("text") or "")
            short = found.group(0) if found else short
        time.sleep(0.5)
    assert short, "no SMS with a short link reached the coordinator"
    answer = page.request.get(short, max_redirects=0)
    assert answer.status == 302
    assert answer.headers["location"] == f"{console_system.url}/signals/{signal.json()['id']}"
