"""One run of the fault suite: the system on the suite's own servers, the peers, the commands
and the faults, the drain, the counts.

Every service runs as production runs it (``opora web`` under gunicorn, ``opora worker``), one
web worker and one worker process per service (the machine has two cores). Notifications sends
email to an SMTP server and SMS to two HTTP gateways in failover order, the first of which will
be slow for a while; the clinic takes referrals by webhook.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from kombu import Connection
from processes import WEB, WORKER, Processes

from chaos.books import outstanding, read_books
from chaos.client import AUDIENCE, ISSUER, Http, Tokens
from chaos.counts import (
    check_dead_letters,
    count_deliveries,
    count_effects,
    count_webhooks,
    read_outside,
    unexpected_messages,
)
from chaos.faults import Injector, Targets, schedule
from chaos.parties import CLINIC_INTAKE, COORDINATOR, Parties
from chaos.receivers import CountingGateway, CountingSmtp, WebhookReceiver
from chaos.servers import PrivatePostgres, PrivateRabbit
from chaos.workload import Command, Driver, Pool, Workload, plan
from shared.config import SERVICES
from shared.messaging.dlq import list_dead_letters
from shared.messaging.topology import Names, system_bindings

PREFIX = "chaos"
SMS_TIMEOUT = 1.0  # seconds the client waits for a gateway
CLAIM_TIMEOUT = 20  # seconds before notifications sends again what a dead worker had claimed


@dataclass
class Options:
    seed: int
    commands: int = 2000
    pool: int = 30
    threads: int = 4
    load_deadline: float = 420.0
    drain_deadline: float = 300.0


@dataclass
class Timings:
    started: float = field(default_factory=time.monotonic)
    load_started: float = 0.0
    load_ended: float = 0.0
    last_fault_ended: float = 0.0
    drained: float | None = None
    ended: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        def since(moment: float | None, start: float) -> float | None:
            return None if moment is None else round(moment - start, 1)

        return {
            "setup_s": since(self.load_started, self.started),
            "load_s": since(self.load_ended, self.load_started),
            "last_fault_ended_s": since(self.last_fault_ended, self.load_started),
            "drain_after_last_fault_s": since(self.drained, self.last_fault_ended),
            "drain_after_load_s": since(self.drained, self.load_ended),
            "total_s": since(self.ended, self.started),
        }


class ChaosRun:
    def __init__(
        self, rabbit: PrivateRabbit, postgres: PrivatePostgres, folder: Path, options: Options
    ) -> None:
        self.rabbit = rabbit
        self.postgres = postgres
        self.folder = folder
        self.options = options
        self.rng = random.Random(options.seed)
        self.timings = Timings()
        self.smtp = CountingSmtp()
        self.gateways = [CountingGateway("gw-a"), CountingGateway("gw-b")]
        self.webhook = WebhookReceiver()
        self.secret = secrets.token_urlsafe(32)
        self.db_urls: dict[str, str] = {}
        self.bindings: dict[str, list[str]] = {}
        self.processes: Processes | None = None
        self.commands: list[Command] = []
        self.injector: Injector | None = None
        self.http: Http | None = None
        self.left: dict[str, int] = {}
        self.drain_log: list[tuple[float, dict[str, int]]] = []  # (s after the last fault, left)

    # --- the system --------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        gateways = ",".join(g.send_url(SMS_TIMEOUT) for g in self.gateways)
        return {
            "OPORA_MODE": "production",
            "OPORA_LOG_LEVEL": "WARNING",
            "OPORA_DATA_DIR": str(self.folder / "data"),
            "BROKER_URL": self.rabbit.url,
            "OPORA_BROKER_PREFIX": PREFIX,
            "OPORA_JWT_SECRET": self.secret,
            "OPORA_JWT_ISSUER": ISSUER,
            "OPORA_JWT_AUDIENCE": AUDIENCE,
            "OPORA_LINK_SECRET": self.secret + ":links",
            "OPORA_PUBLIC_URL": "https://opora.test",
            "SMTP_HOST": self.smtp.host,
            "SMTP_PORT": str(self.smtp.port),
            "SMTP_FROM": "opora@centre.test",
            "NOTIFICATIONS_SMS_PROVIDERS": gateways,
            "NOTIFICATIONS_CLAIM_TIMEOUT_SECONDS": str(CLAIM_TIMEOUT),
            "REFERRALS_WEBHOOK_ALLOW_PRIVATE": "1",  # the clinic's endpoint is on 127.0.0.1
            "REFERRALS_WEBHOOK_BACKOFF_SECONDS": "1",
            "REFERRALS_WEBHOOK_TIMEOUT_SECONDS": "3",
            **{f"{s.upper()}_DATABASE_URL": url for s, url in self.db_urls.items()},
        }

    def __enter__(self) -> ChaosRun:
        self.smtp.start()
        for gateway in self.gateways:
            gateway.start()
        self.webhook.start()
        self.db_urls = self.postgres.create_databases(PREFIX)
        # Which service takes which event, from the code the processes start with.
        self.bindings = system_bindings()
        self.processes = Processes(self.env(), self.folder / "logs", web_workers=1)
        self.processes.start_all(timeout=180)
        self.processes.supervise()
        self.http = Http({s: self.processes.url(s) for s in SERVICES})
        return self

    def __exit__(self, *exc: object) -> None:
        if self.processes is not None:
            self.processes.stop_all()
        self.webhook.stop()
        for gateway in self.gateways:
            gateway.stop()
        self.smtp.stop()

    # --- before the faults -------------------------------------------------------------------

    def set_up(self) -> Workload:
        assert self.http is not None
        parties = Parties(self.http, Tokens(self.secret))
        parties.set_up_directory(self.webhook.url)
        self._wait_for_recipients()
        workload = Workload(parties, Pool())
        for index in range(self.options.pool):
            command = Command(id=f"p{index:03d}", kind="family")
            family = workload.register(command)
            workload.pool.ids.append(family["id"])
            workload.pool.numbers.append(family["number"])
            self.commands.append(command)
        return workload

    def _wait_for_recipients(self, timeout: float = 90) -> None:
        """Notifications learns the coordinator and the clinic's contact from the directory's
        events; the commands start once it knows both."""
        from services.notifications.models import Recipient

        engine = sa.create_engine(self.db_urls["notifications"], poolclass=sa.pool.NullPool)
        deadline = time.monotonic() + timeout
        try:
            while True:
                with engine.connect() as conn:
                    known = set(
                        conn.execute(
                            sa.select(Recipient.person_id).where(Recipient.phone.is_not(None))
                        ).scalars()
                    )
                if {COORDINATOR, CLINIC_INTAKE} <= known:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"notifications knows only {sorted(known)}")
                time.sleep(0.3)
        finally:
            engine.dispose()

    # --- under the faults --------------------------------------------------------------------

    def drive(self, workload: Workload) -> None:
        assert self.processes is not None
        commands = plan(self.rng, self.options.commands, self.options.pool)
        faults = schedule(self.rng, self.processes.names(WORKER), self.processes.names(WEB))
        self.timings.load_started = time.monotonic()
        driver = Driver(
            workload,
            commands,
            threads=self.options.threads,
            deadline=self.timings.load_started + self.options.load_deadline,
        )
        self.injector = Injector(
            Targets(
                self.processes,
                self.rabbit,
                self.postgres,
                self.gateways[0],
                self.gateways[1],
                self.smtp,
                f"{PREFIX}.events",
            ),
            faults,
            lambda: driver.progress,
            self.timings.load_started,
        )
        self.injector.start()
        driver.start()
        driver.join()
        self.timings.load_ended = time.monotonic()
        self.injector.join()
        self.timings.last_fault_ended = self.timings.load_started + self.injector.last_fault_ended
        self.commands += commands

    def drain(self) -> bool:
        """Until nothing is left in any outbox, queue or delivery list (twice in a row)."""
        deadline = time.monotonic() + self.options.drain_deadline
        calm = 0
        while time.monotonic() < deadline:
            self.left = self._left()
            moment = round(time.monotonic() - self.timings.last_fault_ended, 1)
            if not self.drain_log or self.drain_log[-1][1] != self.left:
                self.drain_log.append((moment, self.left))
            calm = calm + 1 if not any(self.left.values()) else 0
            if calm >= 2:
                self.timings.drained = time.monotonic()
                return True
            time.sleep(1.0)
        return False

    def _left(self) -> dict[str, int]:
        try:
            left = {k: v for k, v in outstanding(self.db_urls).items() if v}
        except sa.exc.OperationalError as exc:
            return {f"database unreachable: {type(exc.orig).__name__}": 1}
        if left:
            return left
        skip = (".dlq", f"{PREFIX}.unrouted")
        try:
            depths = self.rabbit.queue_depths()
        except RuntimeError as exc:
            return {f"broker unreachable: {str(exc)[:80]}": 1}
        return {
            f"queue {name}": depth
            for name, depth in depths.items()
            if name.startswith(PREFIX + ".") and not name.endswith(skip) and depth
        }

    # --- the counts --------------------------------------------------------------------------

    def count(self) -> tuple[dict[str, Any], list[str]]:
        assert self.injector is not None and self.processes is not None
        books = read_books(self.db_urls)
        outside = read_outside(self.smtp, self.gateways, self.webhook, self.injector.slow_windows)
        counts = count_effects(self.commands, books, COORDINATOR, CLINIC_INTAKE)
        deliveries = count_deliveries(counts, books, outside, self._crashes("notifications-worker"))
        webhooks = count_webhooks(self.commands, books, outside, counts)
        with Connection(self.rabbit.url) as conn:
            letters = {s: list_dead_letters(conn, Names(PREFIX), s) for s in SERVICES}
        interrupted = [
            s for s in SERVICES if self._crashes(f"{s}-worker") or self._broker_restarted()
        ]
        dead, dead_problems = check_dead_letters(
            letters, self.injector.poison, self.bindings, interrupted
        )
        problems = counts.problems + dead_problems + self.injector.errors
        problems += self._problems(counts.effects, deliveries, outside.sms_in_slow_window)
        report = {
            **self.summary(),
            "effects": {name: t.as_dict() for name, t in sorted(counts.effects.items())},
            "deliveries": {**deliveries, "webhooks": webhooks},
            "unexpected_messages": dict(unexpected_messages(books, counts)),
            "dead_letters": dead,
            "problems": problems,
        }
        return report, problems

    def _broker_restarted(self) -> bool:
        assert self.injector is not None
        return any(h.fault.kind == "broker-restart" for h in self.injector.timeline)

    def _crashes(self, name: str) -> list[dt.datetime]:
        """When ``name`` was killed or died, on the wall clock the history rows use."""
        assert self.injector is not None and self.processes is not None
        moments = [
            self.timings.load_started + h.started
            for h in self.injector.timeline
            if h.fault.kind == "kill" and h.fault.target == name
        ]
        moments += [at for process, _code, at in self.processes.exits if process == name]
        offset = time.time() - time.monotonic()
        return [dt.datetime.fromtimestamp(m + offset, dt.UTC) for m in moments]

    def summary(self) -> dict[str, Any]:
        """What the run knows without reading the databases: also printed when counting fails."""
        assert self.injector is not None and self.processes is not None
        self.timings.ended = time.monotonic()
        return {
            "seed": self.options.seed,
            "commands": dict(Counter(c.kind for c in self.commands)),
            "http": self._http_figures(),
            "poison_published": len(self.injector.poison),
            "smtp_refusals": self.smtp.refusals,
            "faults": [h.as_dict() for h in self.injector.timeline],
            "process_exits": [
                {"process": name, "code": code, "at_s": round(at - self.timings.load_started, 1)}
                for name, code, at in self.processes.exits
            ],
            "process_starts": dict(self.processes.starts),
            "timings": self.timings.as_dict(),
            "drain": [{"after_last_fault_s": t, "left": left} for t, left in self.drain_log],
        }

    def _problems(
        self, effects: dict[str, Any], deliveries: dict[str, Any], slow: dict[str, int]
    ) -> list[str]:
        assert self.injector is not None
        problems = []
        for name, tally in effects.items():
            if tally.missing:
                problems.append(f"{name}: {len(tally.missing)} missing, e.g. {tally.missing[:3]}")
            if tally.duplicated:
                problems.append(
                    f"{name}: {len(tally.duplicated)} twice, e.g. {tally.duplicated[:3]}"
                )
        failed = [c for c in self.commands if c.error]
        problems += [f"{c.id} ({c.kind}) not acknowledged: {c.error}" for c in failed[:10]]
        if len(failed) > 10:
            problems.append(f"... {len(failed)} commands not acknowledged in all")
        if self.left:
            problems.append(f"not drained after {self.options.drain_deadline:.0f}s: {self.left}")
        if self.injector.slow_windows and not slow.get("gw-b"):
            problems.append("no SMS went to gw-b while gw-a was slow")
        if slow.get("gw-a"):
            problems.append(f"gw-a accepted {slow['gw-a']} SMS while it was slower than the client")
        if self.smtp.refusals and not deliveries["email"]["sent_after_a_temporary_failure"]:
            problems.append(
                f"the SMTP server refused {self.smtp.refusals} times, yet no email's history "
                "shows a temporary failure"
            )
        return problems

    def _http_figures(self) -> dict[str, Any]:
        assert self.http is not None
        calls = sum(c.calls for c in self.commands)
        attempts = sum(c.attempts for c in self.commands)
        load = max(1e-9, self.timings.load_ended - self.timings.load_started)
        took = sorted(c.done - c.started for c in self.commands if c.done and not c.error)
        return {
            "calls": calls,
            "command_seconds": {
                "p50": round(took[len(took) // 2], 3) if took else None,
                "p99": round(took[int(len(took) * 0.99)], 3) if took else None,
                "max": round(took[-1], 3) if took else None,
            },
            "attempts": attempts,
            "commands_retried": sum(1 for c in self.commands if c.troubles),
            "answers_replayed": sum(c.replayed for c in self.commands),
            "lost_answers_resent": sum(1 for c in self.commands if c.lost_answer),
            "sent_twice_at_once": sum(1 for c in self.commands if c.twice_at_once),
            "troubles": dict(self.http.troubles),
            "commands_per_s_under_faults": round(self.options.commands / load, 1),
            "not_acknowledged": sum(1 for c in self.commands if c.error),
        }

    def log_tails(self) -> str:
        assert self.processes is not None
        return "\n".join(self.processes.log_tail(name, 15) for name in self.processes.commands)
