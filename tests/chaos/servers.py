"""A RabbitMQ node and a PostgreSQL cluster of the fault suite's own, on free ports in a temp dir.

The machine's servers (5672, 5432) serve other tests at the same time, so the suite never
restarts those: it starts its own, restarts them as faults, and stops them at the end.

- RabbitMQ: a second node (``opora-chaos-<hex>@localhost``) run in the foreground as a child,
  with its own config file (the machine's ``/etc/rabbitmq`` files would bind 5672), no plugins
  (no management port to clash), its own Erlang cookie (``HOME`` in the temp dir). Restarted
  with ``stop_app``/``start_app`` (the broker closes every connection, the node stays) or as a
  whole node (the process is stopped and started again, as after a crash of the host).
- PostgreSQL: ``initdb`` as the ``postgres`` user when we are root (PostgreSQL refuses to run as
  root), ``pg_ctl`` start/stop. ``fsync=off``: the fault is the server process going away, which
  a clean shutdown covers; durability against power loss is not what the suite measures, and
  fsyncs would only slow a 2-core machine.

Binaries missing: :class:`Unavailable`, which the fixture turns into a skip with the reason (a
failure under ``OPORA_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from processes import free_port

from shared.config import SERVICES

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
PORT_CLASH = "eaddrinuse"


class Unavailable(RuntimeError):
    """A server of the suite's own cannot be started here (the reason says why)."""


def _run(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])}... failed: {result.stdout}{result.stderr}")
    return result.stdout


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _since(path: Path, offset: int) -> str:
    """What a log got after ``offset`` (this start's lines, not an earlier one's)."""
    if not path.exists():
        return ""
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


# --- RabbitMQ ----------------------------------------------------------------------------------


def _rabbit_scripts() -> tuple[str, str]:
    """rabbitmq-server and rabbitmqctl, bypassing Debian's wrapper (it would ``su rabbitmq``
    into /var/lib/rabbitmq and use the machine node's cookie)."""
    for folder in (RABBIT_BIN, *(Path(p).parent for p in [shutil.which("rabbitmq-server")] if p)):
        server, ctl = folder / "rabbitmq-server", folder / "rabbitmqctl"
        if server.exists() and ctl.exists() and "script-wrapper" not in server.resolve().name:
            return str(server), str(ctl)
    raise Unavailable("no RabbitMQ server scripts (rabbitmq-server, rabbitmqctl) on this machine")


class PrivateRabbit:
    """One RabbitMQ node of our own; ``url`` is its AMQP URL (guest/guest on 127.0.0.1)."""

    def __init__(self, base: Path) -> None:
        self.server_script, self.ctl_script = _rabbit_scripts()
        self.base = base / "rabbitmq"
        self.node = f"opora-chaos-{uuid.uuid4().hex[:8]}@localhost"
        self.port = 0
        self.dist_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.base / "server.log"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _env(self) -> dict[str, str]:
        home = self.base / "home"
        home.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nlog.console = true\n"
        )
        (self.base / "rabbitmq-env.conf").write_text("")
        return {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def ctl(self, *args: str, timeout: float = 120) -> str:
        return _run([self.ctl_script, "-n", self.node, *args], env=self._env(), timeout=timeout)

    def start(self, timeout: float = 120) -> None:
        """Start the node; the first time on new ports if the chosen ones were taken meanwhile
        (by another socket's ephemeral port), later on the same ones (clients know them)."""
        first = not self.port
        for _attempt in range(5):
            if not self.port:
                self.port, self.dist_port = free_port(), free_port()
            written = _size(self.log)
            if self._start_once(timeout):
                return
            if PORT_CLASH not in _since(self.log, written):
                break
            if first:
                self.port = 0
            else:
                time.sleep(2)
        raise Unavailable(f"RabbitMQ node did not start:\n{self.log_tail()}")

    def _start_once(self, timeout: float) -> bool:
        env = self._env()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.server_script],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                # Right after the start the node may not be registered yet: ask again.
                self.ctl("await_startup", "--timeout", "10", timeout=30)
                return True
            time.sleep(0.5)
        self._kill()
        return False

    def restart_app(self, down_seconds: float) -> None:
        """The broker application stops (every connection closed), then starts again."""
        self.ctl("stop_app")
        time.sleep(down_seconds)
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "60", timeout=90)

    def restart_node(self, down_seconds: float) -> None:
        """The whole node stops and starts again on the same ports and data."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.ctl("stop", timeout=60)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._kill()

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def queue_depths(self) -> dict[str, int]:
        """Messages per queue, ready and unacknowledged together."""
        out = self.ctl("list_queues", "-q", "--no-table-headers", "name", "messages", timeout=60)
        depths = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                depths[parts[0]] = int(parts[1])
        return depths

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return "[no RabbitMQ log]"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# --- PostgreSQL --------------------------------------------------------------------------------


def _pg_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise Unavailable("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")


class PrivatePostgres:
    """One PostgreSQL cluster of our own; ``admin_url`` reaches its ``postgres`` database."""

    def __init__(self, base: Path) -> None:
        self.bindir = _pg_bindir()
        self.base = base / "postgres"
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = 0
        self.as_postgres = os.geteuid() == 0

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _cmd(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bindir / tool), *args]
        return ["runuser", "-u", "postgres", "--", *command] if self.as_postgres else command

    def start(self) -> None:
        """Start the cluster (made on first use); the first time on a new port if the chosen
        one was taken meanwhile, later on the same one (clients know it)."""
        if not self.data.exists():
            self.base.mkdir(parents=True, exist_ok=True)
            if self.as_postgres:
                shutil.chown(self.base, "postgres")
            initdb = ["-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"]
            _run(self._cmd("initdb", *initdb, "-E", "UTF8"))
        first = not self.port
        for _attempt in range(5):
            self.port = self.port or free_port()
            options = (
                f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off -c max_connections=300"
            )
            written = _size(self.log)
            try:
                _run(self._cmd("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log),
                               "-w", "-t", "60", "start"))  # fmt: skip
                return
            except RuntimeError:
                if "already in use" not in _since(self.log, written):
                    raise Unavailable(f"PostgreSQL did not start:\n{self.log_tail()}") from None
                if first:
                    self.port = 0
                else:
                    time.sleep(2)
        raise Unavailable(f"PostgreSQL did not start:\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        _run(self._cmd("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"))

    def restart(self, down_seconds: float) -> None:
        """A fast shutdown (every connection cut), a pause, the same cluster again."""
        self.stop("fast")
        time.sleep(down_seconds)
        self.start()

    def create_databases(self, prefix: str = "opora") -> dict[str, str]:
        """One database per service, migrated to head; their URLs."""
        from shared import db

        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        urls = {}
        with admin.connect() as conn:
            for service in SERVICES:
                conn.execute(sa.text(f'CREATE DATABASE "{prefix}_{service}"'))
                urls[service] = self.url(f"{prefix}_{service}")
        admin.dispose()
        for service, url in urls.items():
            db.upgrade(service, url)
        return urls

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return "[no PostgreSQL log]"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def servers_unavailable_reason() -> str | None:
    """Why the suite's own servers cannot run here, or None."""
    try:
        _rabbit_scripts()
        _pg_bindir()
    except Unavailable as exc:
        return str(exc)
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser: PostgreSQL cannot be started as postgres"
    return None
