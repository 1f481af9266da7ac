"""Structured JSON logs with the correlation id of the request or message being handled.

Log identifiers (family id, case number), never personal data: no names,
addresses, birth dates or phone numbers.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import uuid
from collections.abc import Iterator

from pythonjsonlogger.json import JsonFormatter

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)
causation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "causation_id", default=None
)


def current_correlation_id() -> str:
    """The correlation id in force, or a new one for work that starts here.

    Never sets the variable: only ``correlated`` scopes do, so nothing leaks between units of work.
    """
    return correlation_id.get() or str(uuid.uuid4())


@contextlib.contextmanager
def correlated(corr: str | None, cause: str | None = None) -> Iterator[None]:
    t1 = correlation_id.set(corr)
    t2 = causation_id.set(cause)
    try:
        yield
    finally:
        correlation_id.reset(t1)
        causation_id.reset(t2)


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.correlation_id = correlation_id.get()
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(correlation_id)s",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("pika", "amqp", "kombu", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
