"""The faults, on a schedule drawn from a printed seed, injected while the commands run.

A fault waits for a point of the workload's progress (a fraction of the commands started), not
for a clock time, so that a slower machine still gets every fault in the middle of the traffic.
What a fault does and how long a server stays down come from the seed; when the machine lets
it happen is recorded in the timeline.

- two RabbitMQ restarts: the broker application (every connection closed), then the whole node;
- one PostgreSQL restart (fast shutdown, a pause, start), in the middle of an email delivery run;
- SIGKILL of worker processes (each runs its service's relay, consumer and jobs) and of web
  processes, restarted after a moment;
- poison messages published straight to the events exchange: not JSON, an envelope missing
  fields, an unknown version, data that fails its schema;
- the first SMS gateway answers slower than the client waits, for a while;
- the SMTP server refuses mail (451) for a while.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SLOW_GATEWAY_DELAY = 3.0  # seconds, against a client timeout of 1 s
SHOWN_BY = 10  # SMS the other gateway takes while the first is slow, mails refused, at least
SLOW_AT_MOST = 120.0  # seconds a provider misbehaves at most


@dataclass(frozen=True)
class Fault:
    at: float  # fraction of the commands started
    kind: str
    target: str | None = None
    seconds: float = 0.0

    def describe(self) -> str:
        what = self.kind + (f" {self.target}" if self.target else "")
        return f"{what} ({self.seconds:.1f}s)" if self.seconds else what


def schedule(rng: random.Random, workers: list[str], webs: list[str]) -> list[Fault]:
    faults = [
        Fault(rng.uniform(0.15, 0.30), "broker-restart", "app", rng.uniform(2, 5)),
        Fault(rng.uniform(0.60, 0.75), "broker-restart", "node", rng.uniform(1, 3)),
        Fault(rng.uniform(0.40, 0.55), "postgres-restart", None, rng.uniform(2, 5)),
        Fault(rng.uniform(0.20, 0.40), "poison"),
        Fault(rng.uniform(0.65, 0.90), "poison"),
        Fault(rng.uniform(0.08, 0.20), "sms-slow", "gw-a", rng.uniform(25, 40)),
        Fault(rng.uniform(0.30, 0.50), "smtp-refuse", None, rng.uniform(10, 20)),
    ]
    # Every worker at least once, then two more at random; two web processes.
    targets = [*workers, *rng.sample(workers, 2)]
    faults += [
        Fault(rng.uniform(0.05, 0.90), "kill", name, rng.uniform(0.5, 3)) for name in targets
    ]
    faults += [
        Fault(rng.uniform(0.10, 0.85), "kill", name, rng.uniform(0.5, 2))
        for name in rng.sample(webs, 2)
    ]
    return sorted(faults, key=lambda f: f.at)


@dataclass
class Happened:
    fault: Fault
    started: float  # seconds since the load started
    ended: float | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "fault": self.fault.kind,
            "target": self.fault.target,
            "at_progress": round(self.fault.at, 3),
            "started_s": round(self.started, 1),
            "ended_s": None if self.ended is None else round(self.ended, 1),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Poison:
    message_id: str
    routing_key: str
    kind: str
    reason_has: tuple[str, ...]  # the dead-letter reason names one of these


def poison_batch() -> list[tuple[Poison, bytes]]:
    """Four messages no consumer can use, each with an id of its own."""

    def envelope(event_id: str, event_type: str, version: int, data: dict[str, Any]) -> bytes:
        return json.dumps(
            {
                "id": event_id,
                "type": event_type,
                "version": version,
                "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                "producer": event_type.split(".", 1)[0],
                "correlation_id": "chaos-poison",
                "causation_id": None,
                "data": data,
            }
        ).encode()

    ids = [str(uuid.uuid4()) for _ in range(4)]
    registered = "registry.family.registered"
    return [
        (Poison(ids[0], registered, "not JSON", ("not UTF-8", "not JSON")), b"\xff\xfe{not json"),
        (
            Poison(ids[1], registered, "missing fields", ("bad envelope",)),
            json.dumps({"id": ids[1], "type": registered}).encode(),
        ),
        (
            Poison(ids[2], "referrals.signal.urgent", "unknown version", ("version 99",)),
            envelope(ids[2], "referrals.signal.urgent", 99, {}),
        ),
        (
            Poison(ids[3], registered, "bad data", ("bad data",)),
            envelope(ids[3], registered, 1, {"family_id": ids[3]}),
        ),
    ]


@dataclass
class Targets:
    """What the faults act on."""

    processes: Any  # tests.processes.Processes
    rabbit: Any  # servers.PrivateRabbit
    postgres: Any  # servers.PrivatePostgres
    slow_gateway: Any  # receivers.CountingGateway
    other_gateway: Any
    smtp: Any  # receivers.CountingSmtp
    exchange: str  # the events exchange, for poison


@dataclass
class Injector:
    targets: Targets
    faults: list[Fault]
    progress: Callable[[], float]
    t0: float
    timeline: list[Happened] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    slow_windows: list[tuple[float, float]] = field(default_factory=list)  # monotonic
    errors: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _windows: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Until every fault happened and every window closed."""
        if self._thread is not None:
            self._thread.join()
        for window in self._windows:
            window.join()

    @property
    def last_fault_ended(self) -> float:
        return max((h.ended or h.started) for h in self.timeline) if self.timeline else 0.0

    def _run(self) -> None:
        for fault in self.faults:
            while self.progress() < fault.at:
                time.sleep(0.05)
            happened = Happened(fault, self.now())
            with self._lock:
                self.timeline.append(happened)
            try:
                getattr(self, "_" + fault.kind.replace("-", "_"))(fault, happened)
            except Exception as exc:
                happened.detail = f"failed: {type(exc).__name__}: {exc}"[:500]
                self.errors.append(f"{fault.describe()}: {happened.detail}")
                happened.ended = self.now()

    def _done(self, happened: Happened, detail: str = "") -> None:
        happened.ended = self.now()
        if detail:
            happened.detail = detail

    def _kill(self, fault: Fault, happened: Happened) -> None:
        procs = self.targets.processes
        name = fault.target
        procs.crash(name)
        time.sleep(fault.seconds)
        procs.recover(name)
        if name.endswith("-web"):
            procs.wait_alive([name.rsplit("-", 1)[0]], timeout=90)
        self._done(happened, "SIGKILL, restarted")

    def _broker_restart(self, fault: Fault, happened: Happened) -> None:
        if fault.target == "node":
            self.targets.rabbit.restart_node(fault.seconds)
        else:
            self.targets.rabbit.restart_app(fault.seconds)
        self._done(happened, f"{fault.target} down {fault.seconds:.1f}s, back up")

    def _postgres_restart(self, fault: Fault, happened: Happened) -> None:
        """Timed to land in a notifications delivery run: right after the SMTP server accepted
        an email, while the rest of the run's emails are going out and before their outcomes
        are written (or after 30 s without an email)."""
        smtp = self.targets.smtp
        seen = len(smtp.received)
        deadline = time.monotonic() + 30
        while len(smtp.received) == seen and time.monotonic() < deadline:
            time.sleep(0.002)
        when = "during email delivery" if len(smtp.received) > seen else "no email in 30s"
        self.targets.postgres.restart(fault.seconds)
        self._done(happened, f"fast shutdown {when}, down {fault.seconds:.1f}s, back up")

    def _poison(self, fault: Fault, happened: Happened) -> None:
        import pika

        batch = poison_batch()
        for attempt in range(30):
            try:
                connection = pika.BlockingConnection(pika.URLParameters(self.targets.rabbit.url))
                channel = connection.channel()
                channel.confirm_delivery()
                for poison, body in batch:
                    channel.basic_publish(
                        self.targets.exchange,
                        poison.routing_key,
                        body,
                        pika.BasicProperties(
                            delivery_mode=2,
                            content_type="application/json",
                            message_id=poison.message_id,
                        ),
                        mandatory=True,
                    )
                connection.close()
                break
            except pika.exceptions.AMQPError:
                if attempt == 29:
                    raise
                time.sleep(1)
        self.poison += [p for p, _ in batch]
        self._done(happened, ", ".join(p.kind for p, _ in batch))

    def _sms_slow(self, fault: Fault, happened: Happened) -> None:
        """Slow for the drawn time, and longer if need be, until the other gateway took
        enough SMS meanwhile to show where the traffic went."""
        slow, other = self.targets.slow_gateway, self.targets.other_gateway
        slow.slow(SLOW_GATEWAY_DELAY)
        opened = time.monotonic()
        before = len(other.accepted)

        def keep_slow() -> None:
            time.sleep(fault.seconds)
            while (
                len(other.accepted) - before < SHOWN_BY and time.monotonic() - opened < SLOW_AT_MOST
            ):
                time.sleep(0.5)
            slow.slow(0)
            closed = time.monotonic()
            self.slow_windows.append((opened, closed))
            self._done(
                happened, f"answers after {SLOW_GATEWAY_DELAY:g}s for {closed - opened:.0f}s"
            )

        self._background(keep_slow)

    def _smtp_refuse(self, fault: Fault, happened: Happened) -> None:
        """Refusing for the drawn time, and longer if need be, until enough mail was refused."""
        smtp = self.targets.smtp
        smtp.refuse_for(SLOW_AT_MOST + fault.seconds, 451)
        opened = time.monotonic()
        before = smtp.refusals

        def keep_refusing() -> None:
            time.sleep(fault.seconds)
            while smtp.refusals - before < SHOWN_BY and time.monotonic() - opened < SLOW_AT_MOST:
                time.sleep(0.5)
            smtp.refuse_for(0)
            self._done(
                happened,
                f"451 for {time.monotonic() - opened:.0f}s ({smtp.refusals - before} refused)",
            )

        self._background(keep_refusing)

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        def wait_then_act() -> None:
            time.sleep(seconds)
            action()

        self._background(wait_then_act)

    def _background(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name="fault-window", daemon=True)
        thread.start()
        self._windows.append(thread)
