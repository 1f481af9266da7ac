"""The console's test fixtures.

- ``console_system``: the whole embedded system as ``opora up`` runs it (every service's web
  and worker process, migrated and seeded with the demo) plus the console, on free ports and a
  data folder of its own, once per test session; the browser tests drive it.
- Playwright drives Debian's Chromium (/usr/bin/chromium; browser downloads are not possible
  here), headless.
- ``axe``: checks the page with the locally installed axe-core (WCAG 2.1 AA rules).
- ``screenshot``: ``screenshot(page, "home")`` writes ``home.png`` into the folder named by
  ``OPORA_SCREENSHOTS`` (the README's pictures: ``OPORA_SCREENSHOTS=docs/console pytest
  tests/console -m browser``); without it, nothing is written.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from processes import Processes

from shared import db
from shared.config import APPS, CONSOLE, SERVICES, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("OPORA_TEST_CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@dataclass
class ConsoleSystem:
    processes: Processes
    env: dict[str, str]
    data_dir: Path

    @property
    def url(self) -> str:
        return self.processes.url(CONSOLE)

    def api(self, service: str) -> str:
        return self.processes.url(service)


@pytest.fixture(scope="session")
def console_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleSystem]:
    from shared import db, demo

    base = tmp_path_factory.mktemp("console-system")
    data_dir = base / "var"
    env = {
        "OPORA_MODE": "embedded",
        "OPORA_DATA_DIR": str(data_dir),
        "OPORA_JWT_SECRET": secrets.token_urlsafe(32),
        "OPORA_LOG_LEVEL": "WARNING",
        "WEB_CONCURRENCY": "1",
    }
    processes = Processes(env, base / "logs", web_only=[CONSOLE])
    processes.env.update(
        {
            "OPORA_PUBLIC_URL": processes.url(CONSOLE),
            **{f"CONSOLE_{s.upper()}_URL": processes.url(s) for s in SERVICES},
        }
    )
    for app in APPS:  # what `opora up` does before it starts the processes
        db.upgrade(app, load_settings(app, env=processes.env).database_url)
    demo.seed(processes.env)
    try:
        processes.start_all(timeout=120)
    except BaseException:
        processes.stop_all()
        raise
    try:
        yield ConsoleSystem(processes, processes.env, data_dir)
    finally:
        processes.stop_all()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": ["--no-sandbox", "--disable-dev-shm-usage"],
    }


@pytest.fixture
def axe() -> Callable[[Any], list[dict[str, Any]]]:
    """``axe(page)``: runs axe-core on the page and fails on any WCAG 2.1 A/AA violation."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `make setup` (npm ci)")
    source = AXE.read_text()

    def check(page: Any) -> list[dict[str, Any]]:
        # evaluated over the DevTools protocol, so the page's CSP stays as it is
        page.evaluate(source + "\n;true")
        result = page.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
        )
        violations = result["violations"]
        assert not violations, json.dumps(
            [
                {"id": v["id"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]]}
                for v in violations
            ],
            ensure_ascii=False,
            indent=1,
        )
        return violations

    return check


@pytest.fixture
def screenshot() -> Callable[[Any, str], None]:
    folder = os.environ.get("OPORA_SCREENSHOTS")

    def take(page: Any, name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)

    return take


@pytest.fixture
def console_settings(tmp_path: Path) -> Settings:
    """The console's settings in the embedded mode over a fresh sessions database, for view
    tests that build the app with their clients faked at the client-class boundary."""
    env = {
        "OPORA_MODE": "embedded",
        "OPORA_DATA_DIR": str(tmp_path),
        "OPORA_JWT_SECRET": "test-secret-test-secret-test-secret",
        "OPORA_PUBLIC_URL": "http://console.test",
    }
    settings = load_settings("console", env=env)
    db.upgrade("console", settings.database_url)
    return settings
