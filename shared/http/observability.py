"""Prometheus metrics, the request log line, and the health probes of a service app."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import Engine, text

log = logging.getLogger("opora.http")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROBE_TIMEOUT_SECONDS = 3.0


class HttpMetrics:
    """Request counters and latencies of one app.

    Without ``PROMETHEUS_MULTIPROC_DIR`` each app has its own registry, so several apps in one
    process (the embedded mode, tests) do not clash. Under gunicorn with that variable set, the
    values go to files shared by the workers and ``/metrics`` merges them; the gunicorn config
    must call ``prometheus_client.multiprocess.mark_process_dead`` in ``child_exit``.
    """

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry: CollectorRegistry | None = None if self.multiprocess else CollectorRegistry()
        self.requests = Counter(
            "opora_http_requests",
            "HTTP requests handled, by method, URL rule and status",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "opora_http_request_duration_seconds",
            "HTTP request latency, by method and URL rule",
            ["method", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(method, endpoint).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        registry = self.registry
        if registry is None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def log_request(method: str, endpoint: str, status: int, seconds: float) -> None:
    """Method and URL rule only: paths and query strings may carry identifiers or names."""
    log.info(
        "%s %s %s",
        method,
        endpoint,
        status,
        extra={
            "method": method,
            "endpoint": endpoint,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
        },
    )


def database_ready(engine: Engine) -> bool:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return True


def run_probes(
    probes: dict[str, Callable[[], bool]], timeout: float = PROBE_TIMEOUT_SECONDS
) -> dict[str, bool]:
    """Run the probes in parallel daemon threads and give up on any still running at ``timeout``.

    A hung connection attempt then costs the caller ``timeout`` seconds, never a worker forever.
    """
    results: dict[str, bool] = {}

    def run(name: str, probe: Callable[[], bool]) -> None:
        try:
            results[name] = bool(probe())
        except Exception as exc:
            log.warning("readiness probe %s failed: %s", name, type(exc).__name__)
            results[name] = False

    threads = [
        threading.Thread(target=run, args=(name, probe), name=f"probe-{name}", daemon=True)
        for name, probe in probes.items()
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {name: results.get(name, False) for name in probes}
