"""Referrals benchmark: create-referral throughput over gunicorn, the real referrals app against
a bare Flask + SQLAlchemy endpoint inserting the same row, in the same run, same PostgreSQL,
same number of gunicorn workers, same client.

    python -m bench.referrals_create [--requests N] [--concurrency C] [--workers W]
                                     [--rounds R] [--admin-url URL] [--json PATH] [--keep]

Phases:

1. setup: a fresh database ``opora_bench_referrals_<hex>`` migrated to head; one agency with a
   routing rule, consents for 200 families; dropped at the end unless ``--keep``;
2. servers: ``opora web referrals`` (the production entry point: gunicorn sync workers,
   ``create_app()`` after fork) and ``gunicorn bench.referrals_create:bare_app()`` with the
   same worker count and settings, on free local ports;
3. load: ``--rounds`` alternating rounds of ``--requests`` POSTs each, from ``--concurrency``
   client threads on keep-alive connections. Ours: ``POST /referrals`` with a bearer token (a
   lead specialist) and a fresh ``Idempotency-Key`` - authentication, schema validation, the
   consent check, the per-year number, the history row, the outbox event, the audit entry,
   the stored idempotent answer, all in one transaction. Bare: the same referral row with
   one INSERT, no auth, no checks. The best round of each counts (the machine is shared);
4. report: requests/s of each, the ratio (target >= 0.6), p50/p99 latency of the best round.

Exit status is 0 whatever the figures: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TARGET_RATIO = 0.6
FAMILIES = 200
AGENCY = "bench-school"
JWT_SECRET = "bench-secret-for-hs256-signing-of-dev-tokens"


def body(i: int) -> dict[str, Any]:
    return {
        "family_id": f"bench-fam-{i % FAMILIES}",
        "family_number": f"Т-{i % FAMILIES:05d}",
        "district": "Тарногский",
        "service_code": "truancy_work",
        "reason": "пропуски занятий более двух недель",
        "urgency": "urgent",
        "deadline": "2030-01-31",
        "contact": {"person_id": "spec-1", "name": "Специалист", "phone": "+7 900 000-00-00"},
    }


# --- the bare endpoint -------------------------------------------------------------------------


def bare_app() -> Any:
    """The same referral row, one INSERT per request: no auth, no validation beyond JSON, no
    history, outbox, audit or idempotency. Built after fork, like the real app."""
    from flask import Flask, request
    from sqlalchemy.orm import Session

    from services.referrals.models import Referral
    from shared.db import make_engine, new_id, utcnow

    engine = make_engine(os.environ["REFERRALS_DATABASE_URL"])
    app = Flask("bare")

    @app.post("/referrals")
    def create() -> Any:
        data = request.get_json()
        now = utcnow()
        with Session(engine) as session, session.begin():
            referral = Referral(
                id=new_id(),
                number=f"B-{uuid.uuid4().hex[:12]}",
                family_id=data["family_id"],
                family_number=data["family_number"],
                district=data["district"],
                agency_id=AGENCY,
                service_code=data["service_code"],
                reason=data["reason"],
                urgency=data["urgency"],
                deadline=dt.date.fromisoformat(data["deadline"]),
                contact=data["contact"],
                status="requested",
                sender_id="spec-1",
                version=2,
                created_at=now,
                updated_at=now,
            )
            session.add(referral)
            session.flush()
            answer = {"id": referral.id, "number": referral.number, "status": referral.status}
        return answer, 201

    return app


# --- setup -------------------------------------------------------------------------------------


def make_database(admin_url: str) -> str:
    from shared import db

    name = f"opora_bench_referrals_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    db.upgrade("referrals", url)
    return url


def drop_database(admin_url: str, url: str) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def seed(url: str) -> None:
    from sqlalchemy.orm import Session

    from services.referrals import directory

    engine = sa.create_engine(url)
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as session, session.begin():
        directory.create_agency(
            session,
            {
                "id": AGENCY,
                "name": "Школа",
                "kind": "school",
                "districts": ["Тарногский"],
                "services": ["truancy_work"],
            },
            now,
        )
        directory.add_rule(
            session,
            {"service_code": "truancy_work", "district": "*", "agency_id": AGENCY},
            "bench",
            now,
        )
        for i in range(FAMILIES):
            directory.remember_agreement(
                session,
                {
                    "agreement_id": f"bench-agr-{i}",
                    "case_id": f"bench-case-{i}",
                    "family_id": f"bench-fam-{i}",
                    "signed_on": now.date() - dt.timedelta(days=1),
                    "valid_until": now.date() + dt.timedelta(days=365),
                    "consent_data_processing": True,
                    "share_with": ["school"],
                },
            )
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(url: str, data_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "OPORA_MODE": "embedded",  # the dev token signer; the database is PostgreSQL
            "OPORA_DATA_DIR": data_dir,
            "OPORA_JWT_SECRET": JWT_SECRET,
            "REFERRALS_DATABASE_URL": url,
            "OPORA_LOG_LEVEL": "WARNING",
        }
    )
    return env


def start(cmd: list[str], env: dict[str, str], port: int, log_path: str) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"server on port {port} did not start; see {log_path}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


# --- load --------------------------------------------------------------------------------------


@dataclass
class Round:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    cpu_ms: dict[str, float] | None = None  # per request: server, database, client

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# --- CPU per request: steadier than requests/s when other jobs share the machine ---------------


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (Linux /proc; 0 where unreadable)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _server_pids(master: int) -> list[int]:
    """The gunicorn master and its workers."""
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == master:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def _backend_pids(url: str) -> list[int]:
    """The PostgreSQL backends serving the benchmark's database (both servers' connections)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()


class CpuMeter:
    """CPU spent during a round by the server's processes, the database's backends (the idle
    server's backends add next to nothing) and this client, per request."""

    def __init__(self, server: int, url: str) -> None:
        self.groups = {"server": _server_pids(server), "database": _backend_pids(url)}

    def start(self) -> None:
        self.before = {k: _cpu_seconds(v) for k, v in self.groups.items()}
        self.before["client"] = time.process_time()

    def per_request(self, requests: int) -> dict[str, float]:
        after = {k: _cpu_seconds(v) for k, v in self.groups.items()}
        after["client"] = time.process_time()
        return {k: (after[k] - self.before[k]) * 1000 / requests for k in after}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def load(
    name: str,
    port: int,
    headers: dict[str, str],
    total: int,
    concurrency: int,
    idem: bool,
    meter: CpuMeter | None = None,
) -> Round:
    counter = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            payload = json.dumps(body(i), ensure_ascii=False).encode()
            h = {**headers, "Content-Type": "application/json"}
            if idem:
                h["Idempotency-Key"] = uuid.uuid4().hex
            started = time.perf_counter()
            try:
                conn.request("POST", "/referrals", body=payload, headers=h)
                response = conn.getresponse()
                response.read()
                ok = response.status == 201
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok = False
            mine.append((time.perf_counter() - started) * 1000)
            if not ok:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    if meter is not None:
        meter.start()
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    cpu = meter.per_request(total) if meter is not None else None
    return Round(name, total, seconds, latencies, errors[0], cpu)


def _median_cpu(rounds: list[Round]) -> dict[str, float]:
    measured = [r.cpu_ms for r in rounds if r.cpu_ms]
    keys = ("server", "database", "client")
    return {k: round(statistics.median([m[k] for m in measured] or [0.0]), 3) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="POSTs per round (3000)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers each (2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each, alternating (2)")
    parser.add_argument("--warmup", type=int, default=200, help="POSTs before measuring (200)")
    parser.add_argument(
        "--admin-url", default=os.environ.get("OPORA_BENCH_POSTGRES_URL") or DEFAULT_PG
    )
    parser.add_argument("--json", help="write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)

    from shared.auth.tokens import issue_dev_token
    from shared.config import load_settings

    url = make_database(args.admin_url)
    data_dir = tempfile.mkdtemp(prefix="opora-bench-referrals-")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        seed(url)
        env = server_env(url, data_dir)
        token = issue_dev_token(
            load_settings("referrals", env=env),
            subject="bench-spec",
            roles=["lead_specialist"],
        )
        ours_port, bare_port = free_port(), free_port()
        venv_bin = os.path.dirname(sys.executable)
        ours_cmd = [
            os.path.join(venv_bin, "opora"), "web", "referrals",
            "--bind", f"127.0.0.1:{ours_port}", "--workers", str(args.workers),
        ]  # fmt: skip
        bare_cmd = [
            os.path.join(venv_bin, "gunicorn"), "--workers", str(args.workers),
            "--bind", f"127.0.0.1:{bare_port}", "--timeout", "30",
            "bench.referrals_create:bare_app()",
        ]  # fmt: skip
        procs.append(start(ours_cmd, env, ours_port, os.path.join(data_dir, "ours.log")))
        procs.append(start(bare_cmd, env, bare_port, os.path.join(data_dir, "bare.log")))
        ours_headers = {"Authorization": f"Bearer {token}"}
        print(
            f"referrals create: {args.requests} POSTs x {args.rounds} rounds each, "
            f"concurrency {args.concurrency}, {args.workers} gunicorn workers each"
        )
        load("warm-ours", ours_port, ours_headers, args.warmup, args.concurrency, True)
        load("warm-bare", bare_port, {}, args.warmup, args.concurrency, False)
        meters = {"ours": CpuMeter(procs[0].pid, url), "bare": CpuMeter(procs[1].pid, url)}
        rounds: dict[str, list[Round]] = {"ours": [], "bare": []}
        for n in range(args.rounds):
            for name, port, headers, idem in (
                ("bare", bare_port, {}, False),
                ("ours", ours_port, ours_headers, True),
            ):
                r = load(name, port, headers, args.requests, args.concurrency, idem, meters[name])
                rounds[name].append(r)
                cpu = r.cpu_ms or {}
                print(
                    f"  round {n + 1} {name:4}: {r.rate:8.1f} req/s  "
                    f"p50 {percentile(r.latencies_ms, 50):6.1f} ms  "
                    f"p99 {percentile(r.latencies_ms, 99):6.1f} ms  errors {r.errors}  "
                    f"CPU/request: server {cpu.get('server', 0):.2f} ms, "
                    f"database {cpu.get('database', 0):.2f} ms, "
                    f"client {cpu.get('client', 0):.2f} ms"
                )
        best = {name: max(rs, key=lambda r: r.rate) for name, rs in rounds.items()}
        ratio = best["ours"].rate / best["bare"].rate if best["bare"].rate else 0.0
        # Each round of ours against the bare round just before it: on a shared machine the
        # load drifts, and neighbours see much the same load.
        paired = [
            o.rate / b.rate for b, o in zip(rounds["bare"], rounds["ours"], strict=True) if b.rate
        ]
        figures: dict[str, Any] = {
            name: {
                "requests_per_second": round(r.rate, 1),
                "p50_ms": round(percentile(r.latencies_ms, 50), 2),
                "p99_ms": round(percentile(r.latencies_ms, 99), 2),
                "mean_ms": round(statistics.fmean(r.latencies_ms), 2),
                "errors": r.errors,
                "all_rounds_rps": [round(x.rate, 1) for x in rounds[name]],
                "cpu_ms_per_request": _median_cpu(rounds[name]),
            }
            for name, r in best.items()
        }
        medians = {name: _median_cpu(rs) for name, rs in rounds.items()}
        served = {name: c["server"] + c["database"] for name, c in medians.items()}
        cpu_ratio = served["bare"] / served["ours"] if served["ours"] else 0.0
        figures["ratio"] = round(ratio, 3)
        figures["paired_ratios"] = [round(p, 3) for p in paired]
        figures["cpu_ratio"] = round(cpu_ratio, 3)
        figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
        figures["settings"] = {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "rounds": args.rounds,
        }
        for name in ("bare", "ours"):
            f = figures[name]
            print(
                f"best {name:4}: {f['requests_per_second']:8.1f} req/s  "
                f"p50 {f['p50_ms']:6.1f} ms  p99 {f['p99_ms']:6.1f} ms"
            )
        verdict = "" if ratio >= TARGET_RATIO else "  BELOW TARGET"
        print(
            "round by round: "
            + ", ".join(f"{p:.2f}" for p in paired)
            + f" (median {statistics.median(paired or [0.0]):.2f}); load average now "
            + " ".join(f"{x:.1f}" for x in os.getloadavg())
        )
        print(
            "CPU per request, server + database (median of rounds): "
            f"bare {served['bare']:.2f} ms, ours {served['ours']:.2f} ms; "
            f"bare/ours {cpu_ratio:.2f}"
        )
        print(f"ratio ours/bare: {ratio:.2f} (target >= {TARGET_RATIO}){verdict}")
        if args.json:
            with open(args.json, "w") as out:
                json.dump(figures, out, indent=2)
    finally:
        for proc in procs:
            stop(proc)
        if not args.keep:
            drop_database(args.admin_url, url)
        else:
            print(f"kept database {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
