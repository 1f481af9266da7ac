"""Broker connections: one factory, the same for RabbitMQ and the embedded file transport."""

from __future__ import annotations

import os
import ssl
import time
import uuid
from typing import Any

from kombu import Connection
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

from shared.config import Settings, embedded_broker_options

BLOCKED_TIMEOUT = 60.0  # a publish held by a broker alarm fails after this, rather than hangs


class _AtomicFileChannel(filesystem.Channel):
    """kombu's file transport creates a message's file and then writes it, so a consumer in
    another process can take the file in between, read it empty and die on the JSON, losing the
    message. Here the message is written under a name no consumer looks at (kombu takes only
    ``<ms>_<uuid>.<queue>.msg``) and renamed into place, which is atomic on one file system."""

    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class AtomicFilesystemTransport(filesystem.Transport):
    """The embedded mode's broker: kombu's file transport with whole-file writes."""

    Channel = _AtomicFileChannel


def connect(settings: Settings, *, confirm_publish: bool = False) -> Connection:
    """A kombu connection (not yet connected). One per thread: connections are not thread-safe."""
    url = settings.broker_url
    if url.startswith("filesystem"):
        return Connection(
            transport=AtomicFilesystemTransport,
            transport_options=embedded_broker_options(settings.data_dir),
        )
    if url.startswith("memory"):
        return Connection(url)
    options: dict[str, object] = {}
    if confirm_publish:
        options["confirm_publish"] = True
    return Connection(
        url,
        heartbeat=30,
        connect_timeout=5,
        transport_options=options,
    )


def pika_parameters(connection: Connection) -> Any:
    """The same broker, credentials, heartbeat and timeouts as ``connection``, for pika (the
    consumer reads RabbitMQ through pika; see shared/messaging/deliveries.py)."""
    import pika

    info = connection.info()
    options: dict[str, Any] = {}
    if info["ssl"]:
        context = info["ssl"] if isinstance(info["ssl"], ssl.SSLContext) else None
        options["ssl_options"] = pika.SSLOptions(
            context or ssl.create_default_context(), server_hostname=info["hostname"]
        )
    return pika.ConnectionParameters(
        host=info["hostname"],
        port=info["port"],
        virtual_host=info["virtual_host"],
        credentials=pika.PlainCredentials(info["userid"], info["password"]),
        heartbeat=int(info["heartbeat"] or 0),
        socket_timeout=info["connect_timeout"],
        blocked_connection_timeout=BLOCKED_TIMEOUT,
        connection_attempts=1,
        **options,
    )


def broker_reachable(settings: Settings, timeout: float = 2.0) -> bool:
    conn = connect(settings)
    try:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:
        return False
    finally:
        conn.release()
