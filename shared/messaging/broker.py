"""Broker connections: one factory, the same for RabbitMQ and the embedded file transport."""

from __future__ import annotations

from kombu import Connection

from shared.config import Settings, embedded_broker_options


def connect(settings: Settings, *, confirm_publish: bool = False) -> Connection:
    """A kombu connection (not yet connected). One per thread: connections are not thread-safe."""
    url = settings.broker_url
    if url.startswith("filesystem"):
        return Connection(url, transport_options=embedded_broker_options(settings.data_dir))
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


def broker_reachable(settings: Settings, timeout: float = 2.0) -> bool:
    conn = connect(settings)
    try:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:
        return False
    finally:
        conn.release()
