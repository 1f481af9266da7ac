"""Console benchmark: the server time of each page, and the console's own overhead against the
same API calls made directly, in the same run.

    python -m bench.console_pages [--requests N] [--postgres] [--families N]
                                  [--admin-url URL] [--json PATH] [--profile PAGE]

Set-up (not timed):

- embedded (default): SQLite databases in a temporary folder, migrated and seeded with the demo
  (what ``opora up`` runs);
- ``--postgres``: fresh PostgreSQL databases for the four services and the console's sessions,
  the demo seeded, then ``--families`` more families (default 1,000,000) bulk-loaded into the
  registry with bench/registry_search.py's generator and COPY loader (Russian names, 26
  districts of the Vologda region, so the demo coordinator's district holds about 1/26 of
  them); dropped at the end.

The four services run as ``opora web <service>`` (gunicorn, 2 workers each) on loopback; the
console runs in this process and is driven with the Flask test client, signed in as the demo
coordinator, lead specialist and police inspector (agency staff).

Pages: home per role, the data bank ``/families`` (plain; a district and category filter with a
name search), a family card, a case workspace, ``/approvals`` and the sign-in page.

For each page, a first render records every API call it makes (method, URL, headers with the
person's token) and how the page makes them: in order on the request's thread, or as parts of a
``gather()`` run at once. "Direct" replays exactly those calls with an httpx client of the same
kind, sequentially where the page is and concurrently where it gathers, with nothing else: the
time the page would take if the console cost nothing. Then ``--requests`` rounds, each timing
the page and its direct calls back to back. overhead = (page p50 - direct p50) / direct p50.

Targets: page p95 < 150 ms on the demo data, < 300 ms with 1,000,000 families; overhead <= 30%.
Exit status 0 whatever the figures: a report, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TARGET_DEMO_MS = 150.0
TARGET_MANY_MS = 300.0
TARGET_OVERHEAD = 0.30
ROLES = {
    "coordinator": "demo-coordinator",
    "specialist": "demo-specialist",
    "agency staff": "demo-inspector",
}


# --- recording the API calls of a page -----------------------------------------------------------


@dataclass
class Call:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes


@dataclass
class Step:
    """Calls made in order on the request's thread (one lane), or one gather() (many lanes)."""

    lanes: list[list[Call]] = field(default_factory=list)


class Recorder:
    """Wraps the console's httpx client and its gather(): which calls, in which lanes."""

    def __init__(self) -> None:
        self.active = False
        self.steps: list[Step] = []
        self.local = threading.local()
        self.lock = threading.Lock()

    def start(self) -> None:
        self.steps, self.active = [], True

    def stop(self) -> list[Step]:
        self.active = False
        return self.steps

    def record(self, request: httpx.Request) -> None:
        if not self.active:
            return
        call = Call(request.method, str(request.url), dict(request.headers), request.content)
        lane = getattr(self.local, "lane", None)
        with self.lock:
            if lane is None:
                self.steps.append(Step([[call]]))
            else:
                lane.append(call)

    def wrap_gather(self, gather: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(calls: dict[str, Callable[[], Any]]) -> Any:
            if not self.active:
                return gather(calls)
            step = Step([[] for _ in calls])
            with self.lock:
                self.steps.append(step)

            def in_lane(lane: list[Call], call: Callable[[], Any]) -> Callable[[], Any]:
                def run() -> Any:
                    self.local.lane = lane
                    try:
                        return call()
                    finally:
                        self.local.lane = None

                return run

            return gather(
                {
                    name: in_lane(lane, call)
                    for lane, (name, call) in zip(step.lanes, calls.items(), strict=True)
                }
            )

        return recorded


def instrument(app: Any, recorder: Recorder) -> None:
    """Record the console's calls: an event hook on its httpx client, and every view module's
    ``gather`` wrapped (they import it by name)."""
    import importlib

    from services.console.clients import concurrent

    state = app.extensions["console"]
    state.http.event_hooks["request"].append(recorder.record)
    wrapped = recorder.wrap_gather(concurrent.gather)
    for name in list(sys.modules):
        if name.startswith("services.console.") and name != "services.console.clients.concurrent":
            module = importlib.import_module(name)
            if getattr(module, "gather", None) is concurrent.gather:
                module.gather = wrapped  # type: ignore[attr-defined]


_LANES = ThreadPoolExecutor(max_workers=16, thread_name_prefix="bench-direct")


def replay(http: httpx.Client, steps: list[Step]) -> None:
    """The page's calls without the page: each step after the other, a gather's lanes at once."""

    def lane(calls: list[Call]) -> None:
        for call in calls:
            response = http.request(
                call.method, call.url, headers=call.headers, content=call.content or None
            )
            response.read()

    for step in steps:
        if len(step.lanes) == 1:
            lane(step.lanes[0])
        else:
            for future in [_LANES.submit(lane, calls) for calls in step.lanes]:
                future.result()


# --- the system -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if not match:
        raise RuntimeError("no CSRF token on the page")
    return match.group(1)


@contextlib.contextmanager
def system(args: argparse.Namespace, base: Path) -> Iterator[dict[str, str]]:
    """The databases (seeded), the four services' web processes; yields the console's env."""
    import sqlalchemy as sa

    from shared import db, demo
    from shared.config import APPS, CONSOLE, SERVICES, load_settings

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.processes import Processes

    env = {
        "OPORA_MODE": "embedded",
        "OPORA_DATA_DIR": str(base / "var"),
        "OPORA_JWT_SECRET": secrets.token_urlsafe(32),
        "OPORA_LOG_LEVEL": "WARNING",
        "WEB_CONCURRENCY": "2",
    }
    created: list[str] = []
    admin = (
        sa.create_engine(args.admin_url, isolation_level="AUTOCOMMIT") if args.postgres else None
    )
    try:
        if admin is not None:
            tag = secrets.token_hex(4)
            for app in APPS:
                name = f"opora_bench_console_{tag}_{app}"
                with admin.connect() as conn:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                created.append(name)
                env[f"{app.upper()}_DATABASE_URL"] = (
                    sa.make_url(args.admin_url)
                    .set(database=name)
                    .render_as_string(hide_password=False)
                )
        for app in APPS:
            db.upgrade(app, load_settings(app, env=env).database_url)
        demo.seed(env)
        engine = db.make_engine(load_settings("registry", env=env).database_url)
        with engine.connect() as conn:  # the demo case furthest on: the fullest workspace
            case_id, family_id = conn.execute(
                sa.text(
                    "SELECT c.id, c.family_id FROM cases c JOIN families f ON f.id = c.family_id"
                    " ORDER BY (SELECT count(*) FROM measures m WHERE m.case_id = c.id) DESC"
                    " LIMIT 1"
                )
            ).one()
        engine.dispose()
        if admin is not None and args.families:
            from bench import registry_search

            print(f"loading {args.families:,} families ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            names = registry_search.Names(random.Random(2017))
            engine = db.make_engine(env["REGISTRY_DATABASE_URL"])
            with engine.begin() as conn:  # the loader writes the whole lexicon: the demo's too
                names.lexicon.update(conn.execute(sa.text("SELECT word FROM name_words")).scalars())
                conn.execute(sa.text("DELETE FROM name_words"))
            engine.dispose()
            registry_search.load(
                env["REGISTRY_DATABASE_URL"], args.families, names, dt.datetime.now(dt.UTC).date()
            )
            print(f"  loaded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        processes = Processes(env, base / "logs", services=SERVICES, web_workers=2,
                              workers_per_service=dict.fromkeys(SERVICES, 0))  # fmt: skip
        processes.env["OPORA_PUBLIC_URL"] = "http://127.0.0.1:8000"
        try:
            processes.start_all(timeout=120)
            yield {
                **env,
                **{f"CONSOLE_{s.upper()}_URL": processes.url(s) for s in SERVICES},
                "CONSOLE_DATABASE_URL": load_settings(CONSOLE, env=env).database_url,
                "BENCH_CASE_ID": case_id,
                "BENCH_FAMILY_ID": family_id,
            }
        finally:
            processes.stop_all()
    finally:
        if admin is not None:
            with admin.connect() as conn:
                for name in created:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


# --- pages ----------------------------------------------------------------------------------------


def sign_in(app: Any, person_id: str) -> Any:
    client = app.test_client()
    token = _csrf(client.get("/sign-in").get_data(as_text=True))
    answer = client.post(
        "/sign-in", data={"person_id": person_id, "csrf_token": token, "next": "/"}
    )
    if answer.status_code != 302:
        raise RuntimeError(f"sign-in as {person_id}: {answer.status_code}")
    return client


def pages(app: Any, env: dict[str, str]) -> list[tuple[str, Any, str]]:
    """(name, signed-in test client, path) of every page measured."""
    clients = {role: sign_in(app, person) for role, person in ROLES.items()}
    coordinator = clients["coordinator"]
    with coordinator.session_transaction() as session:
        district = session["person"]["districts"][0]
    form = _csrf(coordinator.get("/families").get_data(as_text=True))
    searched = coordinator.post(
        "/families",
        data={"csrf_token": form, "q": "Смирнов", "district": district, "category": "sop"},
    ).headers["Location"]
    anonymous = app.test_client()
    return [
        ("home: coordinator", coordinator, "/"),
        ("home: specialist", clients["specialist"], "/"),
        ("home: agency staff", clients["agency staff"], "/"),
        ("families", coordinator, "/families"),
        ("families: filter + search", coordinator, searched),
        ("family card", coordinator, f"/families/{env['BENCH_FAMILY_ID']}"),
        ("case workspace", coordinator, f"/cases/{env['BENCH_CASE_ID']}"),
        ("approvals", coordinator, "/approvals"),
        ("sign-in", anonymous, "/sign-in"),
    ]


def measure(app: Any, env: dict[str, str], requests: int) -> list[dict[str, Any]]:
    from services.console.clients import make_http

    recorder = Recorder()
    instrument(app, recorder)
    direct_http = make_http(app.extensions["console"].config.api_timeout)
    rows = []
    for name, client, path in pages(app, env):
        for _ in range(3):  # warm: connections, templates, caches
            client.get(path)
        recorder.start()
        answer = client.get(path)
        steps = recorder.stop()
        if answer.status_code != 200:
            raise RuntimeError(f"{name} {path}: {answer.status_code}")
        for _ in range(3):
            replay(direct_http, steps)
        page_ms, direct_ms = [], []
        for _ in range(requests):
            started = time.perf_counter()
            client.get(path)
            page_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            replay(direct_http, steps)
            direct_ms.append((time.perf_counter() - started) * 1000)
        calls = sum(len(lane) for step in steps for lane in step.lanes)
        direct = statistics.median(direct_ms)
        page = statistics.median(page_ms)
        rows.append(
            {
                "page": name,
                "path": re.sub(r"s=[^&]+", "s=<search>", path),
                "api_calls": calls,
                "gathers": sum(1 for step in steps if len(step.lanes) > 1),
                "page_p50_ms": round(page, 1),
                "page_p95_ms": round(percentile(page_ms, 0.95), 1),
                "direct_p50_ms": round(direct, 1),
                "direct_p95_ms": round(percentile(direct_ms, 0.95), 1),
                "overhead": round((page - direct) / direct, 3) if direct else None,
                "overhead_ms": round(page - direct, 1),
            }
        )
        print(f"  {name}: p95 {rows[-1]['page_p95_ms']} ms", file=sys.stderr, flush=True)
    direct_http.close()
    return rows


def profile(app: Any, env: dict[str, str], page_name: str, requests: int) -> None:
    import cProfile
    import pstats

    for name, client, path in pages(app, env):
        if name == page_name:
            client.get(path)
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(requests):
                client.get(path)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
            return
    raise SystemExit(f"no page {page_name!r}")


def report(result: dict[str, Any]) -> None:
    target = result["target_p95_ms"]
    print(
        f"\nconsole pages, {result['setup']}, {result['requests']} requests each "
        f"(target p95 < {target:.0f} ms, overhead <= {TARGET_OVERHEAD:.0%})"
    )
    header = f"{'page':<27}{'calls':>6}{'p50':>8}{'p95':>8}{'direct p50':>12}{'overhead':>10}"
    print(header)
    print("-" * len(header))
    misses = []
    for row in result["pages"]:
        over = row["overhead"]
        print(
            f"{row['page']:<27}{row['api_calls']:>6}{row['page_p50_ms']:>8.1f}"
            f"{row['page_p95_ms']:>8.1f}{row['direct_p50_ms']:>12.1f}"
            f"{(f'{over:.0%}' if over is not None else '-'):>10}"
        )
        if row["page_p95_ms"] >= target:
            misses.append(f"{row['page']} p95")
        if over is not None and over > TARGET_OVERHEAD and row["api_calls"]:
            misses.append(f"{row['page']} overhead")
    print("BELOW TARGET: " + ", ".join(misses) if misses else "all pages within target")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--families", type=int, default=1_000_000)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("OPORA_BENCH_POSTGRES_URL")
        or os.environ.get("OPORA_TEST_POSTGRES_URL")
        or DEFAULT_PG,
    )
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--profile", metavar="PAGE", help="cProfile one page instead")
    args = parser.parse_args(argv)

    from services.console.app import create_app
    from shared.config import load_settings

    with (
        tempfile.TemporaryDirectory(prefix="opora-bench-console-") as tmp,
        system(args, Path(tmp)) as env,
    ):
        app = create_app(load_settings("console", env=env))
        if args.profile:
            profile(app, env, args.profile, args.requests)
            return 0
        result: dict[str, Any] = {
            "setup": (
                f"PostgreSQL, demo + {args.families:,} families"
                if args.postgres
                else "embedded (SQLite), demo data"
            ),
            "families": args.families if args.postgres else None,
            "requests": args.requests,
            "target_p95_ms": TARGET_MANY_MS if args.postgres else TARGET_DEMO_MS,
            "pages": measure(app, env, args.requests),
        }
    report(result)
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump(result, out, ensure_ascii=False, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
