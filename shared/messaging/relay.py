"""The outbox relay: claims unsent rows, publishes them with windowed confirms, marks them sent.

Several relays may run against one database: on PostgreSQL they claim rows with
``FOR UPDATE SKIP LOCKED``. A relay killed mid-batch leaves its rows unsent, so
another publishes them again; consumers' inboxes absorb the duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import amqp
from kombu import Connection, Exchange, Producer
from sqlalchemy import BigInteger, Row, Update, any_, bindparam, update
from sqlalchemy import select as sql_select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.backoff import backoff_seconds
from shared.db import utcnow
from shared.faults import failpoint
from shared.messaging.outbox import NOTIFY_CHANNEL
from shared.messaging.topology import Names, is_amqp
from shared.tables import InfrastructureTables

log = logging.getLogger(__name__)


# The columns a claim reads: what is published, and the id that marks it sent.
_PUBLISHED = ("id", "event_id", "event_type", "exchange", "routing_key", "headers", "body")


class PublishTimeout(RuntimeError):
    pass


@dataclass
class _Batch:
    """Claimed rows, the open transaction that locks them, and their delivery tags."""

    session: Session
    rows: list[Row[Any]]
    tags: dict[int, int] = field(default_factory=dict)


class OutboxRelay:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        tables: InfrastructureTables,
        connect: Callable[[], Connection],
        names: Names,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        confirm_timeout: float = 15.0,
        pipeline_depth: int = 2,
    ) -> None:
        self.sessions = sessions
        self.tables = tables
        self.connect = connect
        self.names = names
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.confirm_timeout = confirm_timeout
        self.pipeline_depth = pipeline_depth
        self._conn: Connection | None = None
        self._channel: Any = None
        self._outstanding: set[int] = set()
        self._confirmed: set[int] = set()
        self._rejected: set[int] = set()
        self._last_tag = 0
        self._listener: Any = None

    # --- batches ------------------------------------------------------------------------------

    def run_once(self, depth: int = 1, max_batches: int = 1) -> int:
        """Publish up to ``max_batches`` batches of due rows; returns how many were confirmed.

        With ``depth`` > 1 (PostgreSQL only: SKIP LOCKED keeps the next claim off the rows still
        waiting), batch k+1 is claimed and published while batch k's confirms are on their way,
        each batch in its own transaction, so the relay is not idle on every round trip.
        """
        if depth > 1 and not self._pipelines():
            depth = 1
        in_flight: deque[_Batch] = deque()
        confirmed = 0
        try:
            for _ in range(max_batches):
                batch = self._claim_and_send(in_flight)
                if batch is None:
                    break
                in_flight.append(batch)
                if len(in_flight) >= depth:
                    confirmed += self._settle(in_flight)
                if len(batch.rows) < self.batch_size or self._conn is None:
                    break  # caught up, or the connection failed and the batches were postponed
            while in_flight:
                confirmed += self._settle(in_flight)
        finally:
            for batch in in_flight:
                batch.session.close()
        return confirmed

    def _pipelines(self) -> bool:
        engine: Engine = self.sessions.kw["bind"]
        return engine.dialect.name == "postgresql"

    def _claim_and_send(self, in_flight: deque[_Batch]) -> _Batch | None:
        """Claim due rows in a new transaction and publish them without waiting for confirms."""
        outbox = self.tables.outbox
        session = self.sessions()
        session.begin()
        try:
            # In the order of the partial index of unsent rows: ``ORDER BY id`` walked the
            # primary key through every sent row still kept (a day of them) on each claim.
            query = (
                sql_select(*(outbox.c[name] for name in _PUBLISHED))
                .where(outbox.c.sent_at.is_(None), outbox.c.available_at <= utcnow())
                .order_by(outbox.c.available_at, outbox.c.id)
                .limit(self.batch_size)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list(session.execute(query).all())
            if not rows:
                session.close()
                return None
            batch = _Batch(session, rows)
            try:
                batch.tags = self._publish(rows)
            except Exception as exc:
                in_flight.append(batch)
                self._give_up(in_flight, exc)
                return None
            return batch
        except BaseException:
            session.close()
            raise

    def _settle(self, in_flight: deque[_Batch]) -> int:
        """Wait for the oldest batch's confirms, mark its rows sent and commit."""
        batch = in_flight[0]
        try:
            confirmed, rejected = self._await_confirms(batch)
        except Exception as exc:
            self._give_up(in_flight, exc)
            return 0
        in_flight.popleft()
        with batch.session:
            failpoint("relay.before_mark_sent")
            if confirmed:
                batch.session.execute(self._mark_sent(batch.session, confirmed))
            if rejected:
                self._postpone(batch.session, rejected, "broker refused (basic.nack)")
            batch.session.commit()
        return len(confirmed)

    def _mark_sent(self, session: Session, ids: list[int]) -> Update:
        """On PostgreSQL the ids go as one array: an ``IN`` of a thousand placeholders, built by
        SQLAlchemy and parsed by psycopg for every batch, cost the relay twice the CPU."""
        outbox = self.tables.outbox
        if session.get_bind().dialect.name == "postgresql":
            match = outbox.c.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger)))
        else:
            match = outbox.c.id.in_(ids)
        return update(outbox).where(match).values(sent_at=utcnow())

    def _give_up(self, in_flight: deque[_Batch], exc: Exception) -> None:
        """The connection failed: no batch still waiting will be confirmed; postpone them all."""
        self._drop_connection()
        log.warning("relay could not publish", extra={"error": type(exc).__name__})
        while in_flight:
            batch = in_flight.popleft()
            with batch.session:
                self._postpone(
                    batch.session, [r.id for r in batch.rows], f"{type(exc).__name__}: {exc}"
                )
                batch.session.commit()

    def _postpone(self, session: Session, ids: list[int], error: str) -> None:
        outbox = self.tables.outbox
        for row_id in ids:
            attempts = session.execute(
                sql_select(outbox.c.attempts).where(outbox.c.id == row_id)
            ).scalar_one()
            delay = backoff_seconds(attempts, base=1.0, cap=256.0)
            session.execute(
                update(outbox)
                .where(outbox.c.id == row_id)
                .values(
                    attempts=attempts + 1,
                    available_at=utcnow() + timedelta(seconds=delay),
                    last_error=error[:1000],
                )
            )

    def _publish(self, rows: list[Row[Any]]) -> dict[int, int]:
        """Publish rows; returns delivery tag -> row id (empty where the transport has no
        confirms, and then every row counts as confirmed)."""
        conn = self._connection()
        if not is_amqp(conn):
            producer = Producer(conn.default_channel)
            for row in rows:
                exchange = self.names.exchange(row.exchange)
                producer.publish(
                    row.body,
                    exchange=Exchange(exchange, type="topic") if exchange else "",
                    routing_key=row.routing_key,
                    headers=dict(row.headers or {}),
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    message_id=row.event_id,
                    type=row.event_type,
                    declare=[],
                )
            return {}
        channel = self._channel
        tag_to_id: dict[int, int] = {}
        with _corked(conn.connection.transport.sock):
            for row in rows:
                message = amqp.Message(
                    row.body,
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    message_id=row.event_id,
                    type=row.event_type,
                    application_headers=dict(row.headers or {}),
                )
                channel.basic_publish(
                    message, exchange=self.names.exchange(row.exchange), routing_key=row.routing_key
                )
                self._last_tag += 1
                self._outstanding.add(self._last_tag)
                tag_to_id[self._last_tag] = row.id
        return tag_to_id

    def _await_confirms(self, batch: _Batch) -> tuple[list[int], list[int]]:
        """Wait for the broker's confirms of one batch (a window, not one by one)."""
        tag_to_id = batch.tags
        if not tag_to_id:
            return [row.id for row in batch.rows], []
        assert self._conn is not None
        deadline = time.monotonic() + self.confirm_timeout
        while not tag_to_id.keys() <= (self._confirmed | self._rejected):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishTimeout("no publisher confirm in time")
            try:
                self._conn.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        confirmed = [
            i
            for tag, i in tag_to_id.items()
            if tag in self._confirmed and tag not in self._rejected
        ]
        rejected = [i for tag, i in tag_to_id.items() if tag in self._rejected]
        self._confirmed -= tag_to_id.keys()
        self._rejected -= tag_to_id.keys()
        return confirmed, rejected

    # --- connection -----------------------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is not None:
            return self._conn
        conn = self.connect()
        conn.ensure_connection(max_retries=1)
        self._conn = conn
        if is_amqp(conn):
            channel = conn.connection.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self._channel = channel
            self._last_tag = 0
            self._outstanding.clear()
            self._confirmed.clear()
            self._rejected.clear()
        return conn

    def _settled(self, delivery_tag: int, multiple: bool) -> set[int]:
        tags = {t for t in self._outstanding if t <= delivery_tag} if multiple else {delivery_tag}
        self._outstanding -= tags
        return tags

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._confirmed |= self._settled(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._rejected |= self._settled(delivery_tag, multiple)

    def _drop_connection(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:
                log.debug("closing a broken broker connection failed", exc_info=True)

    # --- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                published = self.run_once(depth=self.pipeline_depth, max_batches=20)
                backoff = 0.5
            except Exception:
                log.exception("relay iteration failed; retrying")
                self._drop_connection()
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if published < self.batch_size:
                self._wait_for_work(stop)
            else:
                self._heartbeat()
        self._drop_connection()
        self._close_listener()

    def _wait_for_work(self, stop: threading.Event) -> None:
        """Sleep until the poll interval passes or PostgreSQL says a new row committed."""
        self._heartbeat()
        listener = self._listen()
        if listener is None:
            stop.wait(self.poll_interval)
            return
        try:
            ready, _, _ = select.select([listener], [], [], self.poll_interval)
            if ready:
                listener.poll()
                listener.notifies.clear()
        except Exception:
            self._close_listener()

    def _heartbeat(self) -> None:
        """An idle relay still owes the broker heartbeats, or it is dropped after two misses."""
        if self._conn is None:
            return
        try:
            self._conn.heartbeat_check()
        except Exception:
            self._drop_connection()

    def _listen(self) -> Any:
        if self._listener is not None:
            return self._listener
        engine: Engine = self.sessions.kw["bind"]
        if engine.dialect.name != "postgresql":
            return None
        try:
            raw = engine.raw_connection()
            dbapi: Any = raw.driver_connection
            raw.detach()
            dbapi.autocommit = True
            dbapi.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._listener = _Listener(dbapi)
        except Exception:
            log.debug("LISTEN unavailable; polling", exc_info=True)
            return None
        return self._listener

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.conn.close()
            except Exception:
                log.debug("closing the LISTEN connection failed", exc_info=True)


@contextlib.contextmanager
def _corked(sock: socket.socket) -> Iterator[None]:
    """Hold a batch's small writes (one per message) and send them as full TCP segments: a
    segment per message cost the relay and RabbitMQ a third more CPU. Linux only; elsewhere
    the writes go as they are."""
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None:
        yield
        return
    sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, cork, 0)  # sends what is held


class _Listener:
    """A psycopg connection in LISTEN mode, usable with select()."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.notifies: list[Any] = []

    def fileno(self) -> int:
        return int(self.conn.fileno())

    def poll(self) -> None:
        # Reading any pending notifications empties the socket buffer.
        for notify in self.conn.notifies(timeout=0, stop_after=1000):
            self.notifies.append(notify)
