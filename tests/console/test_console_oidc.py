"""Production sign-in against a REAL OpenID Connect provider on loopback (panva/oidc-provider,
installed from npm by `npm ci` in tests/console/oidc): authorization code with PKCE, the
services verifying its RS256 access tokens through OPORA_JWKS_URL, token refresh, an expired
session, RP-initiated sign-out, and the two ways a sign-in must fail: a provider that names
another issuer, and tokens for another audience."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from processes import Processes, free_port

from shared import db, demo
from shared.config import APPS, CONSOLE, SERVICES, load_settings

pytestmark = [pytest.mark.browser, pytest.mark.embedded]

SIGN_IN = re.compile(r".*/sign-in(\?.*)?$")
OIDC_DIR = Path(__file__).resolve().parent / "oidc"
ACCESS_TTL = 8
PEOPLE = {
    "demo-coordinator": {
        "name": "Координатор (демо)",
        "roles": ["coordinator"],
        "agency": "family-centre",
    },
    "demo-inspector": {"name": "Инспектор", "roles": ["agency_staff"], "agency": "tarnoga-pdn"},
}


@dataclass
class OidcWorld:
    console: str
    wrong_issuer_console: str
    wrong_audience_console: str
    sessions_db: Path


def _provider(port: int, issuer: str, consoles: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PORT": str(port),
        "ISSUER": issuer,
        "REDIRECT_URIS": ",".join(f"{c}/sign-in/callback" for c in consoles),
        "LOGOUT_URIS": ",".join(f"{c}/sign-in" for c in consoles),
        "PEOPLE": json.dumps(PEOPLE),
        "ACCESS_TTL": str(ACCESS_TTL),
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["node", "provider.mjs"], cwd=OIDC_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/jwks", timeout=2):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the OIDC provider did not start:\n{log.read_text()}")


@pytest.fixture(scope="module")
def oidc_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcWorld]:
    if not (OIDC_DIR / "node_modules" / "oidc-provider").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, check=True)
    base = tmp_path_factory.mktemp("oidc-world")
    port, other_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {
        "OPORA_MODE": "embedded",
        "OPORA_DATA_DIR": str(base / "var"),
        "OPORA_LOG_LEVEL": "WARNING",
        "OPORA_JWKS_URL": f"{issuer}/jwks",
        "OPORA_JWT_ISSUER": issuer,
        "OPORA_JWT_AUDIENCE": "opora",
        "CONSOLE_OIDC_ISSUER": issuer,
        "CONSOLE_OIDC_CLIENT_ID": "opora-console",
        "CONSOLE_OIDC_CLIENT_SECRET": "console-secret",
    }
    system = Processes(
        env, base / "logs", web_only=[CONSOLE], workers_per_service=dict.fromkeys(SERVICES, 0)
    )
    others = {
        name: Processes(env, base / f"logs-{name}", services=[], web_only=[CONSOLE])
        for name in ("issuer", "audience")
    }
    for processes in (system, *others.values()):
        processes.env.update(
            {
                "OPORA_PUBLIC_URL": processes.url(CONSOLE),
                **{f"CONSOLE_{s.upper()}_URL": system.url(s) for s in SERVICES},
            }
        )
    others["issuer"].env["CONSOLE_OIDC_ISSUER"] = f"http://127.0.0.1:{other_port}"
    others["audience"].env["CONSOLE_OIDC_CLIENT_ID"] = "opora-console-other"
    consoles = [p.url(CONSOLE) for p in (system, *others.values())]
    providers = [
        _provider(port, issuer, consoles, base / "provider.log"),
        # serves at other_port but calls itself something else: the wrong issuer
        _provider(other_port, f"{issuer}/elsewhere", consoles, base / "provider-other.log"),
    ]
    for app in APPS:
        db.upgrade(app, load_settings(app, env=system.env).database_url)
    demo.seed(system.env)
    try:
        for processes in (system, *others.values()):
            processes.start_all(timeout=120)
        yield OidcWorld(
            console=system.url(CONSOLE),
            wrong_issuer_console=others["issuer"].url(CONSOLE),
            wrong_audience_console=others["audience"].url(CONSOLE),
            sessions_db=base / "var" / "console.db",
        )
    finally:
        for processes in (system, *others.values()):
            processes.stop_all()
        for proc in providers:
            proc.terminate()
            proc.wait(timeout=10)


def sign_in_at_provider(page: Any, console: str, login: str) -> None:
    page.goto(console + "/")
    page.get_by_role("link", name="Войти через единый вход").click()
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any")
    page.locator("button[type=submit]").click()


def stored_sessions(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        return [json.loads(row[0]) for row in conn.execute("SELECT data FROM web_sessions")]


def test_sign_in_refresh_expiry_and_sign_out(page: Any, oidc_world: OidcWorld, axe: Any) -> None:
    console = oidc_world.console
    sign_in_at_provider(page, console, "demo-coordinator")
    page.wait_for_url(console + "/")
    person = page.locator("#person").inner_text()
    assert "Координатор (демо)" in person and "КЦСОН Тарногского района" in person
    assert page.locator("#panel-signals .counter").count() == 3  # the services took the token
    axe(page)
    before = {s["token"] for s in stored_sessions(oidc_world.sessions_db) if "token" in s}

    # the access token lives ACCESS_TTL seconds: the console refreshes it before it runs out
    time.sleep(ACCESS_TTL - 1)
    page.reload()
    assert page.locator("#panel-signals .counter").count() == 3
    after = {s["token"] for s in stored_sessions(oidc_world.sessions_db) if "token" in s}
    assert after - before, "the access token was not refreshed"

    # a refresh the provider refuses ends the session: back to sign-in, told why
    with sqlite3.connect(oidc_world.sessions_db) as conn:
        for key, data in list(conn.execute("SELECT id, data FROM web_sessions")):
            values = json.loads(data)
            if "refresh_token" in values:
                values["refresh_token"] = "revoked"
                conn.execute(
                    "UPDATE web_sessions SET data = ? WHERE id = ?", (json.dumps(values), key)
                )
    time.sleep(ACCESS_TTL - 1)
    page.reload()
    page.wait_for_url(SIGN_IN)
    assert "Сеанс истёк. Войдите снова." in page.content()

    # signed in again (the provider still knows the browser): sign-out ends both sessions
    page.get_by_role("link", name="Войти через единый вход").click()
    page.wait_for_url(console + "/")
    page.get_by_role("button", name="Выйти").click()
    page.get_by_role("button", name="Yes, sign me out").click()  # the provider asks
    page.wait_for_url(console + "/sign-in")
    assert "Вы вышли из системы." in page.content()
    page.get_by_role("link", name="Войти через единый вход").click()
    assert page.locator("input[name=login]").count() == 1  # the provider's session is over too


def test_an_expired_console_session_goes_back_to_sign_in(page: Any, oidc_world: OidcWorld) -> None:
    sign_in_at_provider(page, oidc_world.console, "demo-inspector")
    page.wait_for_url(oidc_world.console + "/")
    with sqlite3.connect(oidc_world.sessions_db) as conn:
        conn.execute("UPDATE web_sessions SET expires_at = '2000-01-01 00:00:00.000000'")
    page.goto(oidc_world.console + "/cases/some-case")
    page.wait_for_url(re.compile(r".*/sign-in\?next=/cases/some-case$"))


def test_a_provider_that_names_another_issuer_signs_nobody_in(
    page: Any, oidc_world: OidcWorld
) -> None:
    page.goto(oidc_world.wrong_issuer_console + "/")
    page.get_by_role("link", name="Войти через единый вход").click()
    page.wait_for_url(SIGN_IN)
    assert "Вход не удался" in page.content()


def test_tokens_for_another_audience_sign_nobody_in(page: Any, oidc_world: OidcWorld) -> None:
    sign_in_at_provider(page, oidc_world.wrong_audience_console, "demo-coordinator")
    page.wait_for_url(oidc_world.wrong_audience_console + "/sign-in")
    assert "Вход не удался" in page.content()
    page.goto(oidc_world.wrong_audience_console + "/")
    page.wait_for_url(re.compile(r".*/sign-in\?next=/$"))
