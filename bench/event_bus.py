"""Event-bus benchmark: our outbox relay + consumer against raw pika, same broker, same run.

    python -m bench.event_bus [--events N] [--json PATH] [--profile DIR]

Phases (the why is in bench/README.md):

1. setup: fresh PostgreSQL databases (registry, raids) migrated with shared.db.upgrade and a
   private broker prefix ``bench<hex>`` with the system topology declared; all dropped at the end;
2. baseline: raw pika, a publisher process (SelectConnection, persistent messages, up to 500
   unconfirmed in flight) and a consumer process (prefetch 200, ack multiple every 50) on a
   quorum queue with the arguments of our service queues; first publish to last ack;
3. ours: N ``registry.family.registered`` events in the registry outbox (written beforehand,
   not timed), then a relay process (OutboxRelay.run) and a raids consumer process
   (Consumer.run), both built by shared.worker.Worker; from releasing the relay until the raids
   inbox holds N rows;
4. latency: events committed one per transaction at a steady rate while both run;
   latency = inbox.handled_at - envelope occurred_at;
5. a table (ratio ours/baseline, target >= 0.5) and, with --json, the same as JSON.

CPU is counted for our processes, the RabbitMQ node that listens on the broker URL's port and
the PostgreSQL processes of the benchmark's own databases (plus PostgreSQL's shared background
processes); everything else busy on the machine is reported as "others".

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
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672//"
EVENT = "registry.family.registered"
TARGET = 0.5
OUTBOX_TXN = 500  # events per transaction when pre-filling the outbox
WINDOW = 500  # baseline publisher: unconfirmed messages in flight
PREFETCH = 200  # baseline consumer (the same as Consumer's default)
ACK_EVERY = 50  # baseline consumer: basic.ack multiple=True every ACK_EVERY deliveries
POLL = 0.05  # waiting loops (start-up, the latency phase) poll every 50 ms
# The throughput phase checks progress every 200 ms and takes its times from the rows' own
# timestamps (inbox.handled_at, outbox.sent_at): exact, without a count(*) every 50 ms costing
# PostgreSQL more CPU than the pipeline's own statements.
PROGRESS_POLL = 0.2
STALL_S = 15.0  # no new inbox row for this long, with work left: the pipeline stalled
SERVICES_USED = ("registry", "raids")


# --- payloads --------------------------------------------------------------------------------


def family_data(i: int) -> dict[str, Any]:
    """A realistic registry.family.registered payload (its envelope: ~640 bytes of UTF-8 JSON)."""
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
    """N envelopes serialised exactly as add_event stages them: (event id, body bytes)."""
    from shared.events import build_envelope, load_all_event_types

    load_all_event_types()
    bodies = []
    for i in range(n):
        envelope = build_envelope(
            EVENT, family_data(i), producer="registry", correlation_id="bench"
        )
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
        bodies.append((envelope["id"], body))
    return bodies


# --- CPU accounting from /proc (read only) ---------------------------------------------------

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


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def broker_pids(port: int) -> list[int]:
    """The RabbitMQ node listening on ``port`` (other nodes on the machine, e.g. a fault test's
    own, are not ours); every beam.smp if it cannot be told (a remote broker)."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    sockets.add(f"socket:[{fields[9]}]")
    beams = _pids_named("beam.smp")
    found = []
    for pid in beams:
        with contextlib.suppress(OSError):
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(_readlink(f"/proc/{pid}/fd/{fd}") in sockets for fd in fds):
                found.append(pid)
    return found or beams


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


_PG_CLIENT_BACKEND = re.compile(r"\(\d+\)|\[local\]|autovacuum worker|walsender|parallel worker")


def postgres_pids(marker: str) -> tuple[list[int], list[int]]:
    """PostgreSQL processes: the backends of databases named with ``marker`` (ours), and the
    server's shared processes (postmaster, WAL writer, checkpointer, ...). Other sessions'
    backends are neither."""
    ours, shared = [], []
    for pid in _pids_named("postgres"):
        title = _cmdline(pid)
        if marker and marker in title:
            ours.append(pid)
        elif not _PG_CLIENT_BACKEND.search(title):
            shared.append(pid)
    return ours, shared


def _system_busy() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / _CLK


class CpuProbe:
    """CPU seconds over a window: our children, our RabbitMQ node, PostgreSQL (the backends of
    the benchmark's databases, and the server's shared processes), and the rest ("others")."""

    def __init__(self, children: dict[str, int], ns: Namespace) -> None:
        self.children = children
        self.broker = broker_pids(urlsplit(ns.broker_url).port or 5672)
        self.marker = ns.db_marker
        self.start = self._snapshot()
        self.t0 = time.monotonic()

    def _snapshot(self) -> dict[str, dict[int, float]]:
        snap = {name: {pid: _proc_cpu(pid)} for name, pid in self.children.items()}
        snap["rabbitmq"] = {pid: _proc_cpu(pid) for pid in self.broker}
        ours, shared = postgres_pids(self.marker)
        snap["postgres"] = {pid: _proc_cpu(pid) for pid in ours}
        snap["postgres_shared"] = {pid: _proc_cpu(pid) for pid in shared}
        snap["parent"] = {os.getpid(): _proc_cpu(os.getpid())}
        snap["system"] = {0: _system_busy()}
        return snap

    def stop(self) -> dict[str, float]:
        end, wall = self._snapshot(), time.monotonic() - self.t0
        out: dict[str, float] = {"wall_s": round(wall, 3)}
        for group, pids in end.items():
            before = self.start.get(group, {})
            used = sum(cpu - before.get(pid, 0.0) for pid, cpu in pids.items())
            out[f"{group}_cpu_s"] = round(max(used, 0.0), 2)
        out["cores_busy"] = round(out["system_cpu_s"] / wall, 2) if wall else 0.0
        known = sum(v for k, v in out.items() if k.endswith("_cpu_s") and k != "system_cpu_s")
        out["others_cpu_s"] = round(max(out["system_cpu_s"] - known, 0.0), 2)  # the noise
        return out


# --- child processes -------------------------------------------------------------------------


_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "extras"}


class _Extras(logging.Filter):
    """Show the ``extra={...}`` fields the project logs with (e.g. the relay's error type)."""

    def filter(self, record: logging.LogRecord) -> bool:
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        record.extras = " ".join(f"{k}={v}" for k, v in extras.items())
        return True


def _child_setup(level: str = "WARNING") -> threading.Event:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Extras())
    handler.setFormatter(
        logging.Formatter("%(processName)s %(levelname)s %(name)s %(message)s %(extras)s")
    )
    logging.basicConfig(level=level, handlers=[handler])
    faulthandler.register(signal.SIGUSR2, all_threads=True)  # kill -USR2 <pid>: stacks to stderr
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
    state: dict[str, Any] = {"count": 0, "t_end": None}

    def on_message(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        state["count"] += 1
        count = state["count"]
        if count % ACK_EVERY == 0 or count == n:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if count == n:
            state["t_end"] = time.monotonic()
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    ready.set()
    channel.start_consuming()
    results.put(("consumer", dict(state)))
    conn.close()


def baseline_publisher(
    url: str, exchange: str, routing_key: str, n: int, ready: Any, go: Any, results: Any
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
    st: dict[str, Any] = {"next": 0, "confirmed": 0, "nacked": 0, "t_start": None, "t_done": None}
    st["error"] = None
    pending: deque[int] = deque()  # delivery tags in publish order
    singles: set[int] = set()  # confirmed one by one while an older tag is still pending

    def publish_more() -> None:
        ch = st["channel"]
        while st["next"] < n and len(pending) - len(singles) < WINDOW:
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

    def start(_frame: Any) -> None:
        ready.set()
        go.wait()  # bodies built and connection open: the clock starts at the first publish
        publish_more()

    def on_channel(channel: Any) -> None:
        st["channel"] = channel
        channel.confirm_delivery(ack_nack_callback=on_confirm, callback=start)

    def on_open_error(connection: Any, error: Any) -> None:
        st["error"] = repr(error)
        connection.ioloop.stop()

    def on_close(connection: Any, reason: Any) -> None:
        if st["t_done"] is None:
            st["error"] = repr(reason)
        connection.ioloop.stop()

    connection = pika.SelectConnection(
        pika_params(url),
        on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
        on_open_error_callback=on_open_error,
        on_close_callback=on_close,
    )
    st["connection"] = connection
    connection.ioloop.start()
    keys = ("confirmed", "nacked", "t_start", "t_done", "error")
    results.put(("publisher", {k: st[k] for k in keys}))


def relay_process(env: dict[str, str], ready: Any, go: Any, profile_path: str | None) -> None:
    """The registry's OutboxRelay, built as shared.worker.Worker builds it, running its loop."""
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
    """The raids Consumer, built as shared.worker.Worker builds it, running its loop."""
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


# --- broker helpers --------------------------------------------------------------------------


def pika_params(url: str) -> Any:
    """pika parameters from a kombu URL: in ``amqp://h:5672//`` the vhost is ``/`` (pika: %2F)."""
    from urllib.parse import quote, unquote, urlsplit, urlunsplit

    import pika

    parts = urlsplit(url)
    vhost = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path) or "/"
    return pika.URLParameters(urlunsplit(parts._replace(path="/" + quote(vhost, safe=""))))


class QueueWatch:
    """Passive declares on one pika connection; reconnects (and counts it) if the broker went away."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.conn: Any = None
        self.interruptions = 0

    def depth(self, queue: str) -> tuple[int, int] | None:
        """(messages ready, consumers), or None while the broker is unreachable."""
        import pika

        try:
            if self.conn is None or not self.conn.is_open:
                self.conn = pika.BlockingConnection(pika_params(self.broker_url))
                self.channel = self.conn.channel()
            ok = self.channel.queue_declare(queue, passive=True)
            return ok.method.message_count, ok.method.consumer_count
        except Exception:
            if self.conn is not None:
                self.interruptions += 1
            self.close()
            return None

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def baseline_names(prefix: str) -> tuple[str, str]:
    return f"{prefix}.baseline", f"{prefix}.baseline"  # exchange, queue (separate namespaces)


def declare_baseline(broker_url: str, prefix: str) -> tuple[str, str]:
    """A topic exchange and a quorum queue with exactly the arguments of our service queues."""
    from kombu import Connection, Exchange, Queue, binding

    from shared.messaging.topology import Names, service_queue

    names = Names(prefix)
    template = service_queue(names, "raids", [EVENT])  # the queue our consumer reads
    exchange_name, queue_name = baseline_names(prefix)
    exchange = Exchange(
        exchange_name, type="topic", durable=True, arguments={"alternate-exchange": names.unrouted}
    )
    queue = Queue(
        queue_name,
        bindings=[binding(exchange, routing_key=EVENT)],
        durable=True,
        queue_arguments=dict(template.queue_arguments),
    )
    with Connection(broker_url) as conn:
        channel = conn.channel()
        exchange(channel).declare()
        queue(channel).declare()
        channel.close()
    return exchange_name, queue_name


def delete_namespace(broker_url: str, prefix: str) -> None:
    """Every queue and exchange of the prefix (tests/conftest.py's _delete_namespace + baseline)."""
    from kombu import Connection

    from shared.config import SERVICES
    from shared.messaging.topology import RETRY_DELAYS_MS, Names

    names = Names(prefix)
    exchange_name, queue_name = baseline_names(prefix)
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
        version = conn._impl.server_properties.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        conn.close()


# --- setup and teardown ----------------------------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    """Fresh databases and a broker prefix of one measurement."""

    prefix: str
    db_urls: dict[str, str]
    broker_url: str

    @property
    def db_marker(self) -> str:
        """What the names of this run's databases have in common (``opora_bench_<hex>_``)."""
        return f"opora_bench_{self.prefix.removeprefix('bench')}_"

    @property
    def env(self) -> dict[str, str]:
        return {
            "OPORA_MODE": "production",
            "BROKER_URL": self.broker_url,
            "OPORA_BROKER_PREFIX": self.prefix,
            "OPORA_JWT_SECRET": f"bench-{self.prefix}",
            "OPORA_JWT_ISSUER": "https://sso.bench.test",
            "OPORA_JWT_AUDIENCE": "opora",
            "OPORA_LOG_LEVEL": "WARNING",
            **{f"{s.upper()}_DATABASE_URL": url for s, url in self.db_urls.items()},
        }


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
                name = sa.make_url(url).database
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def namespace(pg_url: str, broker_url: str) -> Iterator[Namespace]:
    from kombu import Connection

    from shared.messaging.topology import Names, declare_topology, system_bindings

    run = uuid.uuid4().hex[:10]
    prefix = f"bench{run}"
    with databases(pg_url, run) as urls:
        try:
            with Connection(broker_url) as conn:
                declare_topology(conn, Names(prefix), system_bindings())
            yield Namespace(prefix, urls, broker_url)
        finally:
            with contextlib.suppress(Exception):
                delete_namespace(broker_url, prefix)


def postgres_version(admin_url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()


def schema_drift(ns: Namespace) -> dict[str, list[str]]:
    """Tables/columns the services' models map but their migrated databases lack (handlers fail)."""
    import importlib

    import sqlalchemy as sa

    drift: dict[str, list[str]] = {}
    for service in SERVICES_USED:
        metadata = importlib.import_module(f"services.{service}.models").tables.outbox.metadata
        engine = sa.create_engine(ns.db_urls[service])
        try:
            inspector = sa.inspect(engine)
            existing = set(inspector.get_table_names())
            missing: list[str] = []
            for table in metadata.sorted_tables:
                if table.name not in existing:
                    missing.append(table.name)
                    continue
                columns = {c["name"] for c in inspector.get_columns(table.name)}
                missing += [
                    f"{table.name}.{c.name}" for c in table.columns if c.name not in columns
                ]
        finally:
            engine.dispose()
        if missing:
            drift[service] = missing
    return drift


# --- the phases ------------------------------------------------------------------------------


def run_baseline(ctx: Any, ns: Namespace, n: int) -> dict[str, Any]:
    exchange, queue = declare_baseline(ns.broker_url, ns.prefix)
    results = ctx.Queue()
    consumer_ready, publisher_ready, go = ctx.Event(), ctx.Event(), ctx.Event()
    consumer = ctx.Process(
        target=baseline_consumer,
        args=(ns.broker_url, queue, n, consumer_ready, results),
        name="baseline-consumer",
    )
    publisher = ctx.Process(
        target=baseline_publisher,
        args=(ns.broker_url, exchange, EVENT, n, publisher_ready, go, results),
        name="baseline-publisher",
    )
    got: dict[str, dict[str, Any]] = {}
    try:
        consumer.start()
        publisher.start()
        if not (consumer_ready.wait(60) and publisher_ready.wait(120)):
            raise RuntimeError("the baseline processes did not start")
        probe = CpuProbe({"publisher": publisher.pid, "consumer": consumer.pid}, ns)
        go.set()
        deadline = time.monotonic() + max(120.0, n / 100)
        while len(got) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                kind, data = results.get(timeout=0.5)
                got[kind] = data
            if len(got) < 2 and not (publisher.is_alive() or "publisher" in got):
                break
        cpu = probe.stop()
    finally:
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
        "cpu": cpu,
    }


def fill_outbox(sessions: Any, n: int, start: int = 0) -> float:
    """N events through add_event, OUTBOX_TXN per transaction: the producers' share, not timed."""
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


def _timestamp(engine: Any, sql: str) -> float:
    from sqlalchemy import text

    with engine.connect() as conn:
        return float(conn.execute(text(sql)).scalar_one().timestamp())


UNSENT = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
HANDLED = "SELECT count(*) FROM inbox"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def run_ours(
    ctx: Any,
    ns: Namespace,
    n: int,
    *,
    latency_rate: float,
    latency_seconds: float,
    profile_dir: Path | None,
    verbose: bool = False,
) -> dict[str, Any]:
    from sqlalchemy import text

    from shared.db import make_engine, make_sessionmaker
    from shared.messaging.topology import RETRY_DELAYS_MS, Names

    raids_queue = Names(ns.prefix).queue("raids")
    registry_engine = make_engine(ns.db_urls["registry"])
    raids_engine = make_engine(ns.db_urls["raids"])
    registry_sessions = make_sessionmaker(registry_engine)
    label = "ours"
    out: dict[str, Any] = {"events": n, "broker_prefix": ns.prefix}
    procs: list[Any] = []
    watch = QueueWatch(ns.broker_url)
    try:
        out["outbox_fill_s"] = round(fill_outbox(registry_sessions, n), 2)
        # The statistics a running system has (autovacuum keeps them, a minute late): without
        # them the first claims of this bulk-loaded backlog sort all of it, each time.
        with registry_engine.connect() as conn:
            conn.execute(text("ANALYZE outbox"))
            conn.commit()
        out["envelope_bytes"] = _count(
            registry_engine, "SELECT coalesce(avg(octet_length(body)), 0)::int FROM outbox"
        )
        paths = {
            k: str(profile_dir / f"{label}-{k}.prof") if profile_dir else None
            for k in ("relay", "consumer")
        }
        consumer = ctx.Process(
            target=consumer_process, args=(ns.env, paths["consumer"]), name="raids-consumer"
        )
        consumer.start()
        procs.append(consumer)
        deadline = time.monotonic() + 60
        while (watch.depth(raids_queue) or (0, 0))[1] < 1:
            if time.monotonic() > deadline or not consumer.is_alive():
                raise RuntimeError("the raids consumer did not start consuming")
            time.sleep(POLL)
        ready, go = ctx.Event(), ctx.Event()
        relay = ctx.Process(
            target=relay_process, args=(ns.env, ready, go, paths["relay"]), name="registry-relay"
        )
        relay.start()
        procs.append(relay)
        if not ready.wait(60):
            raise RuntimeError("the relay did not start")

        # --- throughput: from releasing the relay until the raids inbox holds N rows ---
        probe = CpuProbe({"relay": relay.pid, "consumer": consumer.pid}, ns)
        interruptions_before = watch.interruptions
        go.set()
        t0, t0_clock = time.monotonic(), time.time()
        max_depth = last_handled = 0
        last_progress = last_report = t0
        stalled = False
        while True:
            time.sleep(PROGRESS_POLL)
            now = time.monotonic()
            handled = _count(raids_engine, HANDLED)
            depth = watch.depth(raids_queue)
            if depth:
                max_depth = max(max_depth, depth[0])
            if handled != last_handled:
                last_handled, last_progress = handled, now
            if verbose and now - last_report >= 1.0:
                last_report = now
                unsent = _count(registry_engine, UNSENT)
                print(
                    f"  [{label}] t={now - t0:6.1f}s handled={handled} unsent={unsent}"
                    f" queue_ready={depth[0] if depth else '?'}",
                    file=sys.stderr,
                )
            if handled >= n:
                break
            if now - last_progress > STALL_S:
                stalled = True
                break
            if not relay.is_alive() or not consumer.is_alive():
                raise RuntimeError(f"a child died with {handled}/{n} handled")
        out["cpu"] = probe.stop()
        out["broker_interruptions"] = watch.interruptions - interruptions_before
        if profile_dir:
            for proc in (relay, consumer):
                os.kill(proc.pid, signal.SIGUSR1)
        out["max_queue_ready"] = max_depth
        if stalled:
            depth = watch.depth(raids_queue)
            names = Names(ns.prefix)
            retries = [names.retry_queue("raids", t) for t in range(1, len(RETRY_DELAYS_MS) + 1)]
            out["stalled"] = {
                "handled": handled,
                "outbox_unsent": _count(registry_engine, UNSENT),
                "queue_ready": depth[0] if depth else None,
                "no_progress_for_s": STALL_S,
                # handler failures show here; a consumer that stopped receiving leaves them at 0
                "in_retry_queues": sum((watch.depth(q) or (0, 0))[0] for q in retries),
                "dead_lettered": (watch.depth(names.dlq("raids")) or (0, 0))[0],
            }
            if verbose:
                print(f"  [{label}] stalled; consumer stack:", file=sys.stderr, flush=True)
                os.kill(consumer.pid, signal.SIGUSR2)
                time.sleep(0.5)
            return out
        # The last event's handled_at is taken just before its batch commits.
        seconds = _timestamp(raids_engine, "SELECT max(handled_at) FROM inbox") - t0_clock
        out["seconds"] = round(seconds, 3)
        out["events_per_s"] = round(n / seconds, 1)

        # --- checks: the relay marks rows sent after the confirms, maybe after the last handle ---
        deadline = time.monotonic() + 10
        while _count(registry_engine, UNSENT) and time.monotonic() < deadline:
            time.sleep(POLL)
        if not _count(registry_engine, UNSENT):
            relay_s = _timestamp(registry_engine, "SELECT max(sent_at) FROM outbox") - t0_clock
            out["relay_done_s"] = round(relay_s, 3)
            out["relay_events_per_s"] = round(n / relay_s, 1)
        out["relay_retried"] = _count(
            registry_engine, "SELECT count(*) FROM outbox WHERE attempts > 0"
        )
        check = {
            "outbox_unsent": _count(registry_engine, UNSENT),
            "inbox_rows": _count(raids_engine, HANDLED),
            "known_families": _count(raids_engine, "SELECT count(*) FROM known_families"),
        }
        check["ok"] = check == {"outbox_unsent": 0, "inbox_rows": n, "known_families": n}
        out["check"] = check

        # --- latency: one transaction per event at a steady rate, both processes running ---
        if latency_seconds > 0 and latency_rate > 0:
            out["latency"] = measure_latency(
                registry_sessions, registry_engine, raids_engine, n, latency_rate, latency_seconds
            )
            out["latency"]["relay_poll_interval_s"] = 0.5  # OutboxRelay default; LISTEN wakes it
        out["broker_interruptions"] = watch.interruptions - interruptions_before
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
        delay = t0 + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        with sessions() as session, session.begin():
            data = family_data(already + k)
            ids.append(add_event(session, tables, EVENT, data, producer="registry")["id"])
    sent_for = time.monotonic() - t0
    deadline = time.monotonic() + 60
    while _count(raids_engine, HANDLED) < already + total and time.monotonic() < deadline:
        time.sleep(POLL)
    inbox, outbox = raids_tables.inbox, tables.outbox
    with raids_engine.connect() as conn:
        query = select(inbox.c.message_id, inbox.c.handled_at).where(inbox.c.message_id.in_(ids))
        handled = dict(conn.execute(query).all())
    with registry_engine.connect() as conn:
        query = select(outbox.c.event_id, outbox.c.body, outbox.c.sent_at).where(
            outbox.c.event_id.in_(ids)
        )
        rows = conn.execute(query).all()
        query = select(outbox.c.attempts, outbox.c.last_error).where(
            outbox.c.event_id.in_(ids), outbox.c.attempts > 0
        )
        retried = conn.execute(query).all()
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
        # events the relay failed to publish at first (postponed with back-off), and why
        "relay_retried": len(retried),
        "relay_errors": sorted({(e or "")[:120] for _, e in retried}),
    }
    if end_to_end:
        result["p50_ms"] = round(percentile(end_to_end, 50), 1)
        result["p99_ms"] = round(percentile(end_to_end, 99), 1)
        result["max_ms"] = round(max(end_to_end), 1)
    if relay_leg:
        result["relay_leg_p50_ms"] = round(percentile(relay_leg, 50), 1)
        result["relay_leg_p99_ms"] = round(percentile(relay_leg, 99), 1)
    return result


# --- report ----------------------------------------------------------------------------------


def profile_summary(path: Path, limit: int = 30) -> str:
    if not path.exists():
        return f"(no profile at {path})"
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)
    return buf.getvalue()


def _row(label: str, value: str, note: str = "") -> str:
    return f"{label:<36}{value:>14}   {note}".rstrip()


def report(results: dict[str, Any]) -> str:
    base = results.get("baseline")
    measured = results.get("ours")
    lines = [
        "",
        "event bus: raw pika baseline vs outbox relay + raids consumer (same broker, same run)",
        "-" * 92,
        _row("N events", f"{results['events']:,}"),
    ]
    if base:
        note = (
            f"mean of before {base['before_events_per_s']:,.0f} and after"
            f" {base['after_events_per_s']:,.0f}; spread {base['spread']:.0%}"
        )
        lines.append(_row("baseline (raw pika) events/s", f"{base['events_per_s']:,.0f}", note))
    if measured and measured.get("stalled"):
        s = measured["stalled"]
        note = (
            f"handled {s['handled']:,} of {measured['events']:,}, then no progress for "
            f"{s['no_progress_for_s']:.0f}s; outbox unsent {s['outbox_unsent']}, "
            f"queue ready {s['queue_ready']}, retrying {s['in_retry_queues']}, "
            f"dead-lettered {s['dead_lettered']}"
        )
        lines.append(_row("ours events/s", "STALLED", note))
    elif measured:
        relay = measured.get("relay_events_per_s")
        note = f"relay alone drained the outbox at {relay:,.0f}/s" if relay else ""
        lines.append(_row("ours events/s", f"{measured['events_per_s']:,.0f}", note))
    if "ratio" in results:
        low, high = results["ratio_range"]
        note = f"target >= {TARGET}; {low:.3f}-{high:.3f} against before/after"
        lines.append(_row("ratio ours/baseline", f"{results['ratio']:.3f}", note))
    if measured and "latency" in measured:
        lat = measured["latency"]
        value = f"{lat.get('p50_ms', float('nan')):.1f} / {lat.get('p99_ms', float('nan')):.1f}"
        note = (
            f"{lat['events']} events at {lat['rate_achieved_per_s']:.0f}/s, one per transaction;"
            f" relay leg p50 {lat.get('relay_leg_p50_ms', float('nan')):.1f} ms"
        )
        if lat.get("relay_retried"):
            note += f"; {lat['relay_retried']} first publishes failed: {lat['relay_errors']}"
        lines.append(_row("latency p50 / p99 (ms)", value, note))
    if measured and "check" in measured:
        check = measured["check"]
        detail = {k: v for k, v in check.items() if k != "ok"}
        lines.append(_row("checks", "ok" if check["ok"] else "FAILED", str(detail)))
        lines.append(_row("envelope size (bytes)", str(measured["envelope_bytes"])))
        cpu = measured["cpu"]
        parts = [f"{k.removesuffix('_cpu_s')} {v}" for k, v in cpu.items() if k.endswith("_cpu_s")]
        lines.append(_row("CPU s while ours ran", f"{cpu['wall_s']} wall", ", ".join(parts)))
    lines.append(_row("RabbitMQ / PostgreSQL", f"{results['rabbitmq']} / {results['postgresql']}"))
    lines.append(
        _row("queues each event is routed to", str(results["queues_per_event"]), "baseline: 1")
    )
    for service, missing in (results.get("schema_drift") or {}).items():
        lines.append(f"WARNING: migrated {service} database lacks {', '.join(missing)}")
    if base and base["spread"] > 0.3:
        lines.append(
            f"WARNING: NOISY - the baseline moved {base['spread']:.0%} within this run"
            " (other load on the machine): trust the ratio less"
        )
    if (measured or {}).get("broker_interruptions"):
        lines.append("WARNING: the broker went away during a measurement (restarted?): rerun")
    lines.append("-" * 92)
    stall = (measured or {}).get("stalled")
    if stall:
        failing = stall["in_retry_queues"] or stall["dead_lettered"]
        if failing:
            cause = "its handler fails (messages in the retry/dead-letter queues)"
        elif stall["handled"] == 0:
            cause = "nothing was handled (a failing handler, or no deliveries)"
        else:
            cause = "the consumer stopped receiving"
        if results.get("schema_drift"):
            cause += " - and the migrations lag the models (WARNING above)"
        lines.append(f"RESULT: BELOW TARGET - the pipeline STALLED: {cause}")
    elif "ratio" not in results:
        lines.append("RESULT: no ratio (baseline skipped or no run completed)")
    elif results["ratio"] < TARGET:
        lines.append(f"RESULT: BELOW TARGET (ratio {results['ratio']:.3f} < {TARGET})")
    else:
        lines.append(f"RESULT: meets the target (ratio {results['ratio']:.3f} >= {TARGET})")
    if results.get("profiled"):
        lines.append("NOTE: run under cProfile (--profile): the throughput of ours is understated")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.event_bus", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=20_000, help="N events (default 20000)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--latency-rate", type=float, default=200.0, help="events/s (default 200)")
    parser.add_argument(
        "--latency-seconds", type=float, default=10.0, help="latency phase length (0 skips it)"
    )
    parser.add_argument("--profile", type=Path, help="cProfile relay and consumer into this folder")
    parser.add_argument("--skip-baseline", action="store_true", help="diagnostics: no baseline")
    parser.add_argument("--verbose", action="store_true", help="progress every second")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    pg_url = os.environ.get("OPORA_BENCH_POSTGRES_URL") or DEFAULT_PG
    broker_url = os.environ.get("OPORA_BENCH_BROKER_URL") or DEFAULT_AMQP
    n = args.events
    ctx = mp.get_context("spawn")  # children open their own connections: nothing inherited
    profile_dir: Path | None = None
    if args.profile:
        profile_dir = args.profile.resolve()
        profile_dir.mkdir(parents=True, exist_ok=True)

    from shared.messaging.topology import system_bindings

    results: dict[str, Any] = {
        "events": n,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rabbitmq": broker_version(broker_url),
        "postgresql": postgres_version(pg_url),
        "cores": os.cpu_count(),
        "profiled": bool(profile_dir),
        "queues_per_event": sum(EVENT in keys for keys in system_bindings().values()),
        "baseline": None,
    }
    options = {
        "latency_rate": args.latency_rate,
        "latency_seconds": args.latency_seconds,
        "profile_dir": profile_dir,
        "verbose": args.verbose,
    }
    started = time.monotonic()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def baseline(ns: Namespace, when: str) -> dict[str, Any]:
        say(f"baseline ({when}): raw pika, {n} events ...")
        try:
            return run_baseline(ctx, ns, n)
        except RuntimeError as exc:  # the broker is shared: one retry after a hiccup
            say(f"baseline failed ({exc}); once more ...")
            return run_baseline(ctx, ns, n)

    runs: list[dict[str, Any]] = []
    with namespace(pg_url, broker_url) as ns:
        results["schema_drift"] = schema_drift(ns)
        for service, missing in results["schema_drift"].items():
            say(f"WARNING: {service}: the migrated database lacks {', '.join(missing)}")
        if not args.skip_baseline:
            runs.append(baseline(ns, "before"))
        say(f"ours: outbox relay + raids consumer, {n} events ...")
        results["ours"] = run_ours(ctx, ns, n, **options)
        if not args.skip_baseline:
            runs.append(baseline(ns, "after"))  # the baseline brackets ours: noise shows
    if runs:
        rates = [r["events_per_s"] for r in runs]
        mean = sum(rates) / len(rates)
        results["baseline"] = {
            "events_per_s": round(mean, 1),
            "before_events_per_s": rates[0],
            "after_events_per_s": rates[-1],
            "spread": round((max(rates) - min(rates)) / mean, 3),
            "runs": runs,
        }
    measured = results["ours"]
    stalled = bool(measured.get("stalled"))
    if results["baseline"] and not stalled:
        results["ratio"] = round(measured["events_per_s"] / results["baseline"]["events_per_s"], 3)
        results["ratio_range"] = [
            round(measured["events_per_s"] / rate, 3) for rate in (max(rates), min(rates))
        ]
    results["below_target"] = stalled or results.get("ratio", 0.0) < TARGET
    results["total_s"] = round(time.monotonic() - started, 1)
    print(report(results))
    if profile_dir and measured:
        for name in ("relay", "consumer"):
            print(f"\n=== cProfile: {name}, throughput phase ===")
            print(profile_summary(profile_dir / f"ours-{name}.prof"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
