"""The fault suite's own RabbitMQ node and PostgreSQL cluster, and its report in pytest's
terminal summary (so the counts show without ``-s`` too)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import unavailable

from chaos.servers import PrivatePostgres, PrivateRabbit, Unavailable, servers_unavailable_reason

REPORTS: list[str] = []


@pytest.fixture(scope="module")
def private_servers() -> Iterator[tuple[PrivateRabbit, PrivatePostgres]]:
    reason = servers_unavailable_reason()
    if reason:
        unavailable(reason)
    base = Path(tempfile.mkdtemp(prefix="opora-chaos-"))
    base.chmod(0o755)  # the postgres user reaches its data folder inside
    rabbit, postgres = PrivateRabbit(base), PrivatePostgres(base)
    try:
        try:
            rabbit.start()
            postgres.start()
        except Unavailable as exc:
            unavailable(str(exc))
        yield rabbit, postgres
    finally:
        rabbit.stop()
        with contextlib.suppress(Exception):
            postgres.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for text in REPORTS:
        terminalreporter.write_sep("=", "chaos report")
        for line in text.splitlines():
            terminalreporter.write_line(line)
