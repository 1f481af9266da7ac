"""The console in the production mode, in a real browser: every service on the real PostgreSQL
and RabbitMQ (fresh databases, a broker prefix of its own), each as its web and worker
processes, the console's sessions in a PostgreSQL database of its own, and people signing in
at a real OpenID Connect provider on loopback (npm ``oidc-provider``). The embedded mode's
browser tests cover each screen; this one shows the same console works on the production
engines: sign-in, home counters fed by all four services, the data bank, a family card and
the signals queue, with axe on each page."""

from __future__ import annotations

import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from processes import Processes, free_port

from console.test_console_oidc import OIDC_DIR, _provider, sign_in_at_provider
from shared import db, demo
from shared.config import CONSOLE, SERVICES, load_settings

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def console_database(postgres_admin_url: str) -> Iterator[str]:
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    name = f"opora_test_{uuid.uuid4().hex[:8]}_console"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_admin_url).set(database=name).render_as_string(False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def production_console(system: Any, console_database: str, tmp_path: Path) -> Iterator[str]:
    if not (OIDC_DIR / "node_modules" / "oidc-provider").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, check=True)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {
        "OPORA_MODE": "production",
        "OPORA_DATA_DIR": str(tmp_path / "var"),
        "OPORA_LOG_LEVEL": "WARNING",
        "OPORA_LINK_SECRET": secrets.token_urlsafe(32),
        "BROKER_URL": system.broker_url,
        "OPORA_BROKER_PREFIX": system.prefix,
        "OPORA_JWKS_URL": f"{issuer}/jwks",
        "OPORA_JWT_ISSUER": issuer,
        "OPORA_JWT_AUDIENCE": "opora",
        "NOTIFICATIONS_EMAIL_MODE": "test",
        "CONSOLE_DATABASE_URL": console_database,
        "CONSOLE_SECRET_KEY": secrets.token_urlsafe(32),
        "CONSOLE_OIDC_ISSUER": issuer,
        "CONSOLE_OIDC_CLIENT_ID": "opora-console",
        "CONSOLE_OIDC_CLIENT_SECRET": "console-secret",
        "WEB_CONCURRENCY": "1",
        **{f"{s.upper()}_DATABASE_URL": url for s, url in system.db_urls.items()},
    }
    processes = Processes(env, tmp_path / "logs", web_only=[CONSOLE])
    processes.env.update(
        {
            "OPORA_PUBLIC_URL": processes.url(CONSOLE),
            **{f"CONSOLE_{s.upper()}_URL": processes.url(s) for s in SERVICES},
        }
    )
    provider = _provider(port, issuer, [processes.url(CONSOLE)], tmp_path / "provider.log")
    db.upgrade(CONSOLE, load_settings(CONSOLE, env=processes.env).database_url)
    demo.seed(processes.env)
    try:
        processes.start_all(timeout=120)
        yield processes.url(CONSOLE)
    finally:
        processes.stop_all()
        provider.terminate()
        provider.wait(timeout=10)


def test_the_console_works_on_postgresql_and_rabbitmq(
    page: Any, production_console: str, axe: Any
) -> None:
    console = production_console
    sign_in_at_provider(page, console, "demo-coordinator")
    page.wait_for_url(console + "/")
    assert "Координатор (демо)" in page.locator("#person").inner_text()
    for panel in ("signals", "intakes", "approvals", "raids"):
        assert page.locator(f"#panel-{panel} .counter").count() >= 1, panel
    axe(page)

    page.goto(console + "/families")
    rows = page.locator("table tbody tr")
    assert rows.count() == 3  # the demo district's families, from the registry on PostgreSQL
    axe(page)
    rows.first.locator("a").first.click()
    page.wait_for_url(console + "/families/*")
    assert page.locator("h1").count() == 1
    assert "служба сейчас не отвечает" not in page.content()
    axe(page)

    page.goto(console + "/signals")
    assert page.locator("h1").count() == 1
    axe(page)
