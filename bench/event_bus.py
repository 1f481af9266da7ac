"""Event-bus benchmark: our outbox relay + consumer against raw pika, on the same broker, same run.

    python -m bench.event_bus [--events N] [--json PATH] [--profile DIR]

Phases (see bench/README.md for the why):

1. setup: two fresh PostgreSQL databases (registry, raids) migrated with shared.db.upgrade, a
   private broker prefix ``bench<hex>`` with the system topology declared;
2. baseline: raw pika, one publisher process (SelectConnection, persistent messages, up to
   500 unconfirmed in flight) and one consumer process (prefetch 200, ack multiple every 50)
   on a quorum queue with the same arguments as our service queues; timed from the first
   publish to the last ack;
3. ours: N ``registry.family.registered`` events written to the registry outbox (not timed),
   then a relay process (OutboxRelay.run) and a raids consumer process (Consumer.run), both
   built by shared.worker.Worker; timed from releasing the relay until the raids inbox holds N
   rows;
4. latency: events inserted one transaction each at a steady rate while both run;
   latency = inbox.handled_at - envelope occurred_at;
5. a table (ratio ours/baseline, target >= 0.5) and, with --json, the same as JSON.

Exit status is 0 even below target: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import faulthandler
import io
import json
import logging
import math
import multiprocessing as mp
import os
import pstats
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672//"
EVENT = "registry.family.registered"
TARGET = 0.5
OUTBOX_TXN = 500  # events per transaction when pre-filling the outbox
WINDOW = 500  # baseline publisher: unconfirmed messages in flight
PREFETCH = 200  # baseline consumer
ACK_EVERY = 50  # baseline consumer: basic.ack multiple=True every ACK_EVERY deliveries
POLL = 0.05  # parent polls the raids inbox every 50 ms
SERVICES_USED = ("registry", "raids")

log = logging.getLogger("bench.event_bus")


# --- payloads --------------------------------------------------------------------------------------


def family_data(i: int) -> dict[str, Any]:
    """A realistic registry.family.registered payload (envelope ~ 550 bytes of UTF-8 JSON)."""
    return {
        "family_id": str(uuid.uuid4()),
        "number": f"F-{i:08X}",
        "category": "risk_group",
        "address": {
            "region": "Вологодская область",
            "district": "Тарногский район",
            "settlement": "с. Тарногский Городок",
            "street": "ул. Советская",
            "house": str(1 + i % 200),
            "flat": None,
            "latitude": None,
            "longitude": None,
        },
        "display_name": "Иванова",
        "children_count": 1 + i % 4,
        "family_version": 1,
    }


def make_bodies(n: int) -> list[tuple[str, bytes]]:
    """N envelopes built exactly as add_event builds them: (event id, body bytes)."""
    import services.registry.events  # noqa: F401  (registers the schema)
    from shared.events import build_envelope

    bodies = []
    for i in range(n):
        envelope = build_envelope(
            EVENT, family_data(i), producer="registry", correlation_id="bench"
        )
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
        bodies.append((envelope["id"], body))
    return bodies


# --- CPU accounting from /proc (read-only) ---------------------------------------------------------

_CLK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / _CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def _pids_named(name: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == name:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def _system_busy() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / _CLK


class CpuProbe:
    """CPU seconds used by our children, RabbitMQ (beam.smp) and PostgreSQL during a window."""

    def __init__(self, children: dict[str, int]) -> None:
        self.children = children
        self.start = self._snapshot()
        self.t0 = time.monotonic()

    def _snapshot(self) -> dict[str, dict[int, float]]:
        snap = {name: {pid: _proc_cpu(pid)} for name, pid in self.children.items()}
        snap["rabbitmq"] = {pid: _proc_cpu(pid) for pid in _pids_named("beam.smp")}
        snap["postgres"] = {pid: _proc_cpu(pid) for pid in _pids_named("postgres")}
        snap["parent"] = {os.getpid(): _proc_cpu(os.getpid())}
        snap["system"] = {0: _system_busy()}
        return snap

    def stop(self) -> dict[str, float]:
        end, wall = self._snapshot(), time.monotonic() - self.t0
        out: dict[str, float] = {"wall_s": round(wall, 3)}
        for group, pids in end.items():
            used = sum(cpu - self.start.get(group, {}).get(pid, 0.0) for pid, cpu in pids.items())
            out[f"{group}_cpu_s"] = round(max(used, 0.0), 2)
        out["cores_busy"] = round(out["system_cpu_s"] / wall, 2) if wall else 0.0
        return out


# --- child processes -------------------------------------------------------------------------------


def _child_setup(level: str = "WARNING") -> threading.Event:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(processName)s %(levelname)s %(name)s %(message)s"
    )
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop


class _Profiler:
    """cProfile of the child's main thread; SIGUSR1 (or the end) writes the stats and stops it."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.prof = cProfile.Profile() if path else None
        self.done = False
        if path:
            signal.signal(signal.SIGUSR1, lambda _s, _f: self.dump())

    def enable(self) -> None:
        if self.prof is not None:
            self.prof.enable()

    def dump(self) -> None:
        if self.prof is not None and not self.done:
            self.prof.disable()
            self.prof.dump_stats(self.path)
            self.done = True


def baseline_consumer(url: str, queue: str, n: int, ready: Any, results: Any) -> None:
    import pika

    _child_setup()
    conn = pika.BlockingConnection(pika_params(url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    state: dict[str, Any] = {"count": 0, "t_first": None, "t_end": None}

    def on_message(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        state["count"] += 1
        count = state["count"]
        if state["t_first"] is None:
            state["t_first"] = time.monotonic()
        if count % ACK_EVERY == 0 or count == n:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if count == n:
            state["t_end"] = time.monotonic()
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    ready.set()
    channel.start_consuming()
    results.put(("consumer", {k: state[k] for k in ("count", "t_first", "t_end")}))
    conn.close()


def baseline_publisher(
    url: str, exchange: str, routing_key: str, n: int, window: int, results: Any
) -> None:
    import pika
    from pika.spec import Basic

    _child_setup()
    bodies = make_bodies(n)
    props = [
        pika.BasicProperties(
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            message_id=event_id,
            type=EVENT,
            headers={},
        )
        for event_id, _ in bodies
    ]
    st: dict[str, Any] = {
        "next": 0,
        "confirmed": 0,
        "nacked": 0,
        "t_start": None,
        "t_done": None,
        "error": None,
    }
    pending: deque[int] = deque()  # delivery tags in publish order
    singles: set[int] = set()  # confirmed one by one while an older tag is still pending

    def publish_more() -> None:
        ch = st["channel"]
        while st["next"] < n and len(pending) - len(singles) < window:
            i = st["next"]
            if st["t_start"] is None:
                st["t_start"] = time.monotonic()
            ch.basic_publish(exchange, routing_key, bodies[i][1], props[i])
            st["next"] = i + 1
            pending.append(i + 1)

    def on_confirm(frame: Any) -> None:
        method = frame.method
        key = "nacked" if isinstance(method, Basic.Nack) else "confirmed"
        if method.multiple:
            while pending and pending[0] <= method.delivery_tag:
                tag = pending.popleft()
                if tag in singles:
                    singles.discard(tag)
                else:
                    st[key] += 1
        else:
            singles.add(method.delivery_tag)
            st[key] += 1
            while pending and pending[0] in singles:
                singles.discard(pending.popleft())
        if st["confirmed"] + st["nacked"] >= n:
            st["t_done"] = time.monotonic()
            st["connection"].close()
        else:
            publish_more()

    def on_channel(channel: Any) -> None:
        st["channel"] = channel
        channel.confirm_delivery(
            ack_nack_callback=on_confirm, callback=lambda _frame: publish_more()
        )

    def on_open(connection: Any) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_open_error(connection: Any, error: Any) -> None:
        st["error"] = repr(error)
        connection.ioloop.stop()

    def on_close(connection: Any, reason: Any) -> None:
        if st["t_done"] is None:
            st["error"] = repr(reason)
        connection.ioloop.stop()

    connection = pika.SelectConnection(
        pika_params(url),
        on_open_callback=on_open,
        on_open_error_callback=on_open_error,
        on_close_callback=on_close,
    )
    st["connection"] = connection
    connection.ioloop.start()
    results.put(
        ("publisher", {k: st[k] for k in ("confirmed", "nacked", "t_start", "t_done", "error")})
    )


def relay_process(env: dict[str, str], ready: Any, go: Any, profile_path: str | None) -> None:
    """The registry's OutboxRelay, built like shared.worker.Worker builds it, running its loop."""
    stop = _child_setup()
    from shared.config import load_settings
    from shared.worker import Worker

    worker = Worker(load_settings("registry", env=env))
    profiler = _Profiler(profile_path)
    ready.set()
    while not go.wait(0.05):
        if stop.is_set():
            return
    profiler.enable()
    try:
        worker.relay.run(stop)
    finally:
        profiler.dump()
        worker.engine.dispose()  # type: ignore[union-attr]


def consumer_process(env: dict[str, str], profile_path: str | None) -> None:
    """The raids service's Consumer, built like shared.worker.Worker builds it, running its loop."""
    stop = _child_setup()
    from shared.config import load_settings
    from shared.worker import Worker

    worker = Worker(load_settings("raids", env=env))
    profiler = _Profiler(profile_path)
    profiler.enable()
    try:
        worker.consumer.run(stop)
    finally:
        profiler.dump()
        worker.engine.dispose()  # type: ignore[union-attr]


def _stop_children(procs: list[Any], timeout: float = 15.0) -> None:
    for proc in procs:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


# --- broker helpers --------------------------------------------------------------------------------


def pika_params(url: str) -> Any:
    """pika parameters from a kombu-style URL: in ``amqp://h:5672//`` the vhost is ``/`` (pika wants %2F)."""
    from urllib.parse import quote, unquote, urlsplit, urlunsplit

    import pika

    parts = urlsplit(url)
    vhost = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path) or "/"
    return pika.URLParameters(urlunsplit(parts._replace(path="/" + quote(vhost, safe=""))))


def _queue_info(broker_url: str, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, by a passive declare."""
    import pika

    conn = pika.BlockingConnection(pika_params(broker_url))
    try:
        ok = conn.channel().queue_declare(queue, passive=True)
        return ok.method.message_count, ok.method.consumer_count
    finally:
        conn.close()


class QueueWatch:
    """A long-lived pika connection for cheap passive declares while polling."""

    def __init__(self, broker_url: str) -> None:
        import pika

        self.conn = pika.BlockingConnection(pika_params(broker_url))
        self.channel = self.conn.channel()

    def depth(self, queue: str) -> tuple[int, int]:
        ok = self.channel.queue_declare(queue, passive=True)
        return ok.method.message_count, ok.method.consumer_count

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def _baseline_names(prefix: str) -> tuple[str, str]:
    return f"{prefix}.baseline", f"{prefix}.baseline"  # exchange, queue (separate namespaces)


def declare_baseline(broker_url: str, prefix: str) -> tuple[str, str]:
    """A topic exchange and a quorum queue with exactly our service queues' arguments."""
    from kombu import Connection, Exchange, Queue, binding

    from shared.messaging.topology import Names, service_queue

    names = Names(prefix)
    like = service_queue(names, "raids", [EVENT])  # the queue our consumer reads, as a template
    exchange_name, queue_name = _baseline_names(prefix)
    exchange = Exchange(
        exchange_name, type="topic", durable=True, arguments={"alternate-exchange": names.unrouted}
    )
    queue = Queue(
        queue_name,
        bindings=[binding(exchange, routing_key=EVENT)],
        durable=True,
        queue_arguments=dict(like.queue_arguments),
    )
    with Connection(broker_url) as conn:
        channel = conn.channel()
        exchange(channel).declare()
        queue(channel).declare()
        channel.close()
    return exchange_name, queue_name


def delete_namespace(broker_url: str, prefix: str) -> None:
    """Every queue and exchange of the prefix (as tests/conftest.py's _delete_namespace, plus ours)."""
    from kombu import Connection

    from shared.config import SERVICES
    from shared.messaging.topology import RETRY_DELAYS_MS, Names

    names = Names(prefix)
    exchange_name, queue_name = _baseline_names(prefix)
    with Connection(broker_url) as conn:
        channel = conn.channel()
        queues = [queue_name, names.unrouted]
        for service in SERVICES:
            queues += [names.queue(service), names.dlq(service)]
            queues += [names.retry_queue(service, t) for t in range(1, len(RETRY_DELAYS_MS) + 1)]
        for queue in queues:
            channel.queue_delete(queue)
        for exchange in (exchange_name, names.events, names.unrouted, names.dlx, names.retry):
            channel.exchange_delete(exchange)
        channel.close()


def broker_version(broker_url: str) -> str:
    import pika

    conn = pika.BlockingConnection(pika_params(broker_url))
    try:
        props = conn._impl.server_properties
        version = props.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        conn.close()


# --- the phases ------------------------------------------------------------------------------------


def run_baseline(ctx: Any, broker_url: str, prefix: str, n: int) -> dict[str, Any]:
    exchange, queue = declare_baseline(broker_url, prefix)
    results = ctx.Queue()
    ready = ctx.Event()
    consumer = ctx.Process(
        target=baseline_consumer,
        args=(broker_url, queue, n, ready, results),
        name="baseline-consumer",
    )
    consumer.start()
    if not ready.wait(30):
        raise RuntimeError("baseline consumer did not start")
    publisher = ctx.Process(
        target=baseline_publisher,
        args=(broker_url, exchange, EVENT, n, WINDOW, results),
        name="baseline-publisher",
    )
    publisher.start()
    probe: CpuProbe | None = None
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + max(120.0, n / 100)
    while len(got) < 2 and time.monotonic() < deadline:
        if probe is None and publisher.pid:
            probe = CpuProbe({"publisher": publisher.pid, "consumer": consumer.pid})
        with contextlib.suppress(Exception):
            kind, data = results.get(timeout=0.5)
            got[kind] = data
    cpu = probe.stop() if probe else {}
    _stop_children([publisher, consumer])
    pub, con = got.get("publisher", {}), got.get("consumer", {})
    if pub.get("error") or not pub.get("t_start") or not con.get("t_end"):
        raise RuntimeError(f"baseline failed: publisher={pub} consumer={con}")
    seconds = con["t_end"] - pub["t_start"]
    return {
        "events": n,
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1),
        "publisher_confirmed_per_s": round(n / (pub["t_done"] - pub["t_start"]), 1),
        "nacked": pub["nacked"],
        "consumed": con["count"],
        "window": WINDOW,
        "prefetch": PREFETCH,
        "ack_every": ACK_EVERY,
        "cpu": cpu,  # covers publisher start-up (building bodies) too: indicative only
    }


def fill_outbox(sessions: Any, n: int, start: int = 0) -> float:
    from services.registry.models import tables
    from shared.events import load_all_event_types
    from shared.messaging.outbox import add_event

    load_all_event_types()
    t0 = time.monotonic()
    for first in range(start, start + n, OUTBOX_TXN):
        with sessions() as session, session.begin():
            for i in range(first, min(first + OUTBOX_TXN, start + n)):
                add_event(session, tables, EVENT, family_data(i), producer="registry")
    return time.monotonic() - t0


def _count(engine: Any, sql: str) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def run_ours(
    ctx: Any,
    env: dict[str, str],
    db_urls: dict[str, str],
    broker_url: str,
    prefix: str,
    n: int,
    *,
    latency_rate: float,
    latency_seconds: float,
    profile_dir: Path | None,
    verbose: bool = False,
) -> dict[str, Any]:
    from shared.db import make_engine, make_sessionmaker
    from shared.messaging.topology import Names

    names = Names(prefix)
    raids_queue = names.queue("raids")
    registry_engine = make_engine(db_urls["registry"])
    raids_engine = make_engine(db_urls["raids"])
    registry_sessions = make_sessionmaker(registry_engine)
    out: dict[str, Any] = {"events": n}
    procs: list[Any] = []
    watch = QueueWatch(broker_url)
    try:
        out["outbox_fill_s"] = round(fill_outbox(registry_sessions, n), 2)
        body_bytes = _count(
            registry_engine, "SELECT coalesce(avg(octet_length(body)), 0)::int FROM outbox"
        )
        out["envelope_bytes"] = body_bytes

        profile = {
            k: str(profile_dir / f"{k}.prof") if profile_dir else None
            for k in ("relay", "consumer")
        }
        consumer = ctx.Process(
            target=consumer_process, args=(env, profile["consumer"]), name="raids-consumer"
        )
        consumer.start()
        procs.append(consumer)
        deadline = time.monotonic() + 60
        while watch.depth(raids_queue)[1] < 1:
            if time.monotonic() > deadline or not consumer.is_alive():
                raise RuntimeError("the raids consumer did not start consuming")
            time.sleep(0.05)
        ready, go = ctx.Event(), ctx.Event()
        relay = ctx.Process(
            target=relay_process, args=(env, ready, go, profile["relay"]), name="registry-relay"
        )
        relay.start()
        procs.append(relay)
        if not ready.wait(60):
            raise RuntimeError("the relay did not start")

        # --- throughput: from releasing the relay until the raids inbox holds N rows ---
        probe = CpuProbe({"relay": relay.pid, "consumer": consumer.pid})
        go.set()
        t0 = time.monotonic()
        t_relay_done = t_end = None
        max_depth = 0
        last_report = t0
        timeout = max(180.0, n / 50)
        while True:
            time.sleep(POLL)
            now = time.monotonic()
            handled = _count(raids_engine, "SELECT count(*) FROM inbox")
            if (
                t_relay_done is None
                and _count(registry_engine, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                == 0
            ):
                t_relay_done = now
            with contextlib.suppress(Exception):
                max_depth = max(max_depth, watch.depth(raids_queue)[0])
            if verbose and now - last_report >= 1.0:
                last_report = now
                unsent = _count(
                    registry_engine, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
                )
                print(
                    f"  t={now - t0:6.1f}s handled={handled} unsent={unsent} queue={max_depth}",
                    file=sys.stderr,
                )
            if handled >= n:
                t_end = now
                break
            if now - t0 > timeout or not relay.is_alive() or not consumer.is_alive():
                raise RuntimeError(f"gave up after {now - t0:.0f}s with {handled}/{n} handled")
        out["cpu"] = probe.stop()
        seconds = t_end - t0
        out["seconds"] = round(seconds, 3)
        out["events_per_s"] = round(n / seconds, 1)
        out["relay_done_s"] = round((t_relay_done or t_end) - t0, 3)
        out["relay_events_per_s"] = round(n / ((t_relay_done or t_end) - t0), 1)
        out["max_queue_depth"] = max_depth
        if profile_dir:
            for proc in (relay, consumer):
                os.kill(proc.pid, signal.SIGUSR1)

        # --- checks ---
        deadline = time.monotonic() + 10
        while (
            _count(registry_engine, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            and time.monotonic() < deadline
        ):
            time.sleep(POLL)
        out["check"] = {
            "outbox_unsent": _count(
                registry_engine, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
            ),
            "inbox_rows": _count(raids_engine, "SELECT count(*) FROM inbox"),
            "known_families": _count(raids_engine, "SELECT count(*) FROM known_families"),
        }
        out["check"]["ok"] = (
            out["check"]["outbox_unsent"] == 0
            and out["check"]["inbox_rows"] == n
            and out["check"]["known_families"] == n
        )

        # --- latency: one transaction per event at a steady rate, both processes running ---
        if latency_seconds > 0 and latency_rate > 0:
            out["latency"] = measure_latency(
                registry_sessions, registry_engine, raids_engine, n, latency_rate, latency_seconds
            )
    finally:
        watch.close()
        _stop_children(procs)
        registry_engine.dispose()
        raids_engine.dispose()
    return out


def measure_latency(
    sessions: Any,
    registry_engine: Any,
    raids_engine: Any,
    already: int,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    from sqlalchemy import select

    from services.raids.models import tables as raids_tables
    from services.registry.models import tables
    from shared.messaging.outbox import add_event

    total = int(rate * seconds)
    ids: list[str] = []
    late = 0.0
    t0 = time.monotonic()
    for k in range(total):
        target = t0 + k / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        with sessions() as session, session.begin():
            ids.append(
                add_event(session, tables, EVENT, family_data(already + k), producer="registry")[
                    "id"
                ]
            )
    sent_for = time.monotonic() - t0
    deadline = time.monotonic() + 60
    while (
        _count(raids_engine, "SELECT count(*) FROM inbox") < already + total
        and time.monotonic() < deadline
    ):
        time.sleep(POLL)
    inbox, outbox = raids_tables.inbox, tables.outbox
    with raids_engine.connect() as conn:
        handled = dict(
            conn.execute(
                select(inbox.c.message_id, inbox.c.handled_at).where(inbox.c.message_id.in_(ids))
            ).all()
        )
    with registry_engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.event_id, outbox.c.body, outbox.c.sent_at).where(
                outbox.c.event_id.in_(ids)
            )
        ).all()
    end_to_end, relay_leg = [], []
    for event_id, body, sent_at in rows:
        occurred = dt.datetime.fromisoformat(json.loads(body)["occurred_at"])
        if event_id in handled:
            end_to_end.append((handled[event_id] - occurred).total_seconds() * 1000)
        if sent_at is not None:
            relay_leg.append((sent_at - occurred).total_seconds() * 1000)
    result: dict[str, Any] = {
        "events": total,
        "rate_asked_per_s": rate,
        "rate_achieved_per_s": round(total / sent_for, 1),
        "max_producer_lag_ms": round(late * 1000, 1),
        "handled": len(end_to_end),
    }
    if end_to_end:
        result.update(
            p50_ms=round(percentile(end_to_end, 50), 1),
            p99_ms=round(percentile(end_to_end, 99), 1),
            max_ms=round(max(end_to_end), 1),
        )
    if relay_leg:
        result.update(
            relay_leg_p50_ms=round(percentile(relay_leg, 50), 1),
            relay_leg_p99_ms=round(percentile(relay_leg, 99), 1),
        )
    return result


# --- setup and teardown ----------------------------------------------------------------------------


@contextlib.contextmanager
def databases(admin_url: str, run: str) -> Iterator[dict[str, str]]:
    import sqlalchemy as sa

    from shared import db

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    urls: dict[str, str] = {}
    try:
        with admin.connect() as conn:
            for service in SERVICES_USED:
                name = f"opora_bench_{run}_{service}"
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                urls[service] = (
                    sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
                )
        for service, url in urls.items():
            db.upgrade(service, url)
        yield urls
    finally:
        with admin.connect() as conn:
            for url in urls.values():
                conn.execute(
                    sa.text(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')
                )
        admin.dispose()


def postgres_version(admin_url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()


def profile_summary(path: Path, limit: int = 25) -> str:
    if not path.exists():
        return f"(no profile at {path})"
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)
    return buf.getvalue()


# --- report ----------------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    base, ours = results["baseline"], results["ours"]
    lat = ours.get("latency", {})
    ratio = results["ratio"]
    lines = [
        "",
        "event bus: raw pika baseline vs outbox relay + consumer (same broker, same run)",
        "-" * 78,
        f"{'N events':<34}{results['events']:>12,}",
        f"{'baseline (raw pika) events/s':<34}{base['events_per_s']:>12,.0f}"
        f"   (publisher confirmed {base['publisher_confirmed_per_s']:,.0f}/s)",
        f"{'ours end to end events/s':<34}{ours['events_per_s']:>12,.0f}"
        f"   (relay alone done at {ours['relay_events_per_s']:,.0f}/s)",
        f"{'ratio ours/baseline':<34}{ratio:>12.3f}   target >= {TARGET}",
        f"{'latency p50 / p99 (ms)':<34}{lat.get('p50_ms', float('nan')):>12.1f} / {lat.get('p99_ms', float('nan')):.1f}"
        f"   at {lat.get('rate_achieved_per_s', 0):.0f}/s for {lat.get('events', 0)} events"
        f" (relay leg p50 {lat.get('relay_leg_p50_ms', float('nan')):.1f})",
        f"{'checks':<34}{'ok' if ours['check']['ok'] else 'FAILED':>12}   {ours['check']}",
        f"{'envelope size (bytes)':<34}{ours['envelope_bytes']:>12}",
        f"{'RabbitMQ / PostgreSQL':<34}{results['rabbitmq']:>12} / {results['postgresql']}",
        f"{'CPU s during ours (wall s)':<34}"
        + "  ".join(
            f"{k.removesuffix('_cpu_s')} {v}"
            for k, v in ours["cpu"].items()
            if k.endswith("_cpu_s")
        )
        + f"  (wall {ours['cpu']['wall_s']}, cores busy {ours['cpu']['cores_busy']})",
        "-" * 78,
        "RESULT: "
        + ("meets target" if ratio >= TARGET else f"BELOW TARGET (ratio {ratio:.3f} < {TARGET})"),
    ]
    if results.get("profiled"):
        lines.append(
            "NOTE: run under cProfile (--profile): throughput figures are inflated by the profiler"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.event_bus", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--events", type=int, default=20_000, help="N events per throughput phase (default 20000)"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--latency-rate", type=float, default=200.0, help="events/s in the latency phase"
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=10.0,
        help="duration of the latency phase (0 skips)",
    )
    parser.add_argument(
        "--profile", type=Path, help="cProfile the relay and consumer into this folder"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="progress of the timed phase every second"
    )
    parser.add_argument(
        "--skip-baseline", action="store_true", help="diagnostics only: no baseline, no ratio"
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    pg_url = os.environ.get("OPORA_BENCH_POSTGRES_URL") or DEFAULT_PG
    broker_url = os.environ.get("OPORA_BENCH_BROKER_URL") or DEFAULT_AMQP
    n = args.events
    run = uuid.uuid4().hex[:10]
    prefix = f"bench{run}"
    ctx = mp.get_context("spawn")  # children open their own connections, nothing inherited
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.profile = args.profile.resolve()

    from kombu import Connection

    from shared.messaging.topology import Names, declare_topology, system_bindings

    results: dict[str, Any] = {
        "events": n,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rabbitmq": broker_version(broker_url),
        "postgresql": postgres_version(pg_url),
        "broker_prefix": prefix,
        "cores": os.cpu_count(),
        "profiled": bool(args.profile),
    }
    bindings = system_bindings()
    results["queues_per_event"] = sum(EVENT in keys for keys in bindings.values())
    started = time.monotonic()
    try:
        with databases(pg_url, run) as db_urls:
            with Connection(broker_url) as conn:
                declare_topology(conn, Names(prefix), bindings)
            env = {
                "OPORA_MODE": "production",
                "BROKER_URL": broker_url,
                "OPORA_BROKER_PREFIX": prefix,
                "OPORA_JWT_SECRET": f"bench-{prefix}",
                "OPORA_LOG_LEVEL": "WARNING",
                **{f"{s.upper()}_DATABASE_URL": url for s, url in db_urls.items()},
            }
            if args.skip_baseline:
                results["baseline"] = None
            else:
                print(f"baseline: raw pika, {n} events ...", file=sys.stderr, flush=True)
                results["baseline"] = run_baseline(ctx, broker_url, prefix, n)
            print(
                f"ours: outbox relay + raids consumer, {n} events ...", file=sys.stderr, flush=True
            )
            results["ours"] = run_ours(
                ctx,
                env,
                db_urls,
                broker_url,
                prefix,
                n,
                latency_rate=args.latency_rate,
                latency_seconds=args.latency_seconds,
                profile_dir=args.profile,
                verbose=args.verbose,
            )
    finally:
        with contextlib.suppress(Exception):
            delete_namespace(broker_url, prefix)
    results["total_s"] = round(time.monotonic() - started, 1)
    if results["baseline"]:
        results["ratio"] = round(
            results["ours"]["events_per_s"] / results["baseline"]["events_per_s"], 3
        )
        results["below_target"] = results["ratio"] < TARGET
        print(report(results))
    else:
        print(json.dumps(results["ours"], indent=2))
    if args.profile:
        for name in ("relay", "consumer"):
            print(f"\n=== cProfile: {name} (throughput phase) ===")
            print(profile_summary(args.profile / f"{name}.prof"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
