"""The worker process of a service: consumer, outbox relay, retry pump and periodic jobs.

Built after fork from settings (``opora worker SERVICE``); tests build one with
their own URLs and drive its parts directly.
"""

from __future__ import annotations

import functools
import importlib
import logging
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kombu import Connection
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db import make_engine, make_sessionmaker, transaction, utcnow
from shared.events import load_all_event_types
from shared.logging import correlated
from shared.messaging import broker
from shared.messaging.consumer import Consumer, Handlers, RetryPump, conn_errors
from shared.messaging.relay import OutboxRelay
from shared.messaging.topology import Names, declare_topology, is_amqp, system_bindings
from shared.tables import InfrastructureTables

log = logging.getLogger(__name__)

SENT_OUTBOX_RETENTION = timedelta(days=1)
INBOX_RETENTION = timedelta(days=7)  # longer than any redelivery window
IDEMPOTENCY_RETENTION = timedelta(hours=24)


@dataclass
class JobContext:
    settings: Settings
    sessions: sessionmaker[Session]
    tables: InfrastructureTables


@dataclass(frozen=True)
class Job:
    """Work done on a clock rather than on an event (reminders, deliveries, clean-ups)."""

    name: str
    every_seconds: float
    run: Callable[[JobContext], Any]


def housekeeping(ctx: JobContext) -> None:
    now = utcnow()
    t = ctx.tables
    with transaction(ctx.sessions) as session:
        session.execute(delete(t.outbox).where(t.outbox.c.sent_at < now - SENT_OUTBOX_RETENTION))
        session.execute(delete(t.inbox).where(t.inbox.c.handled_at < now - INBOX_RETENTION))
        session.execute(
            delete(t.idempotency_keys).where(
                t.idempotency_keys.c.created_at < now - IDEMPOTENCY_RETENTION
            )
        )


@dataclass
class Worker:
    settings: Settings
    engine: Engine | None = None
    relay_batch_size: int = 1000
    consumer_batch_size: int = 300
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        service = self.settings.service
        load_all_event_types()
        self.tables: InfrastructureTables = importlib.import_module(
            f"services.{service}.models"
        ).tables
        handlers_module = importlib.import_module(f"services.{service}.handlers")
        self.handlers: Handlers = handlers_module.handlers
        self.handlers.settings = self.settings
        self.jobs: list[Job] = [
            Job("housekeeping", 3600, housekeeping),
            *getattr(handlers_module, "jobs", []),
        ]
        self.engine = self.engine or make_engine(self.settings.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.names = Names(self.settings.broker_prefix)
        self.relay = OutboxRelay(
            self.sessions, self.tables, self.connect, self.names, batch_size=self.relay_batch_size
        )
        self.consumer = Consumer(
            service,
            self.handlers,
            self.sessions,
            self.tables,
            self.confirmed_connection,
            self.names,
            batch_size=self.consumer_batch_size,
            prefetch=2 * self.consumer_batch_size,
        )
        self.job_context = JobContext(self.settings, self.sessions, self.tables)
        # Further consumers of a service's own queues (e.g. referrals' agency ingress): each
        # factory in its handlers module's ``consumers`` gets this worker, returns None to skip.
        self.extra_consumers: list[Consumer] = [
            consumer
            for factory in getattr(handlers_module, "consumers", [])
            if (consumer := factory(self)) is not None
        ]

    def connect(self, confirm_publish: bool = False) -> Connection:
        return broker.connect(self.settings, confirm_publish=confirm_publish)

    def confirmed_connection(self) -> Connection:
        return self.connect(confirm_publish=True)

    def declare(self) -> None:
        """Every service's queues, so nothing published before a consumer starts is unroutable."""
        with self.connect() as conn:
            conn.ensure_connection(max_retries=5)
            declare_topology(conn, self.names, system_bindings())

    def start_background(self, stop: threading.Event) -> None:
        self._spawn("relay", lambda: self.relay.run(stop))
        with self.connect() as conn:
            embedded = not is_amqp(conn)
        if embedded:
            pump = RetryPump(self.settings.service, self.connect, self.names)
            self._spawn("retry-pump", lambda: pump.run(stop))
        for consumer in self.extra_consumers:
            self._spawn(f"consumer-{consumer.service}", functools.partial(consumer.run, stop))
        for job in self.jobs:
            self._spawn(f"job-{job.name}", functools.partial(self._run_job, job, stop))

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(
            target=target, name=f"{self.settings.service}-{name}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _run_job(self, job: Job, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with correlated(str(uuid.uuid4())):
                    job.run(self.job_context)
            except Exception:
                log.exception("job failed", extra={"job": job.name})
            stop.wait(job.every_seconds)

    def _declare_when_reachable(self, stop: threading.Event) -> bool:
        """A worker started while the broker is down waits for it instead of exiting with a
        traceback; False if asked to stop meanwhile."""
        pause = 1.0
        while not stop.is_set():
            try:
                self.declare()
                return True
            except conn_errors() as exc:
                log.warning(
                    "broker unreachable; waiting for it", extra={"error": type(exc).__name__}
                )
                stop.wait(pause)
                pause = min(pause * 2, 30.0)
        return False

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()

        def _graceful(_signum: int, _frame: Any) -> None:
            stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _graceful)
            signal.signal(signal.SIGINT, _graceful)
        if not self._declare_when_reachable(stop):
            return
        self.start_background(stop)
        log.info("worker started", extra={"queue": self.names.queue(self.settings.service)})
        self.consumer.run(stop)
        for thread in self._threads:
            thread.join(timeout=10)
        log.info("worker stopped")
