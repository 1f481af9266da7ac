"""Every service as its own processes, as production runs them: ``opora web SERVICE`` (gunicorn)
and ``opora worker SERVICE``, one of each per service, on the databases and broker the
environment names.

The end-to-end scenario and the fault suite drive the system through this: HTTP to the web
processes, and SIGKILL/restart of any process by name (``registry-web``, ``notifications-worker``).
Output of each process goes to ``<log_dir>/<name>.log``, which a failing test can print.

``supervise()`` restarts a process that exits on its own, as production's restart policy does
(``restart: unless-stopped``): a worker started while the broker is down gives up declaring
its queues and exits, and comes back once the broker does. A process a test crashed on purpose
(``crash``) stays down until ``recover``.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from shared.config import CONSOLE, SERVICES

ROOT = Path(__file__).resolve().parents[1]
WEB, WORKER = "web", "worker"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port below the kernel's ephemeral range: a server restarted on the same port (the
    fault suite's broker and database) must not find it taken meanwhile by some client's
    outgoing connection, which the kernel numbers from that range."""
    low, high = 10_000, _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, high) if high > low else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_environ() -> dict[str, str]:
    """The parent's environment without Opora's own variables: only what the caller passes counts."""
    prefixes = ("OPORA_", "BROKER_", "SMTP_", *(f"{s.upper()}_" for s in (*SERVICES, CONSOLE)))
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


class Processes:
    """Web and worker processes of the named services; a context manager that stops them all."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        services: Iterable[str] = SERVICES,
        web_workers: int = 1,
        workers_per_service: Mapping[str, int] | None = None,
        web_only: Iterable[str] = (),
    ) -> None:
        """``web_only``: apps with a web process and no worker (the console)."""
        web_only = tuple(web_only)
        self.services = [*services, *web_only]
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.ports = {service: free_port() for service in self.services}
        self.env = {**_clean_environ(), **env, "PYTHONUNBUFFERED": "1"}
        self.web_workers = web_workers
        self.commands: dict[str, list[str]] = {}
        for service in self.services:
            self.commands[f"{service}-{WEB}"] = [
                WEB,
                service,
                "--bind",
                f"127.0.0.1:{self.ports[service]}",
                "--workers",
                str(web_workers),
            ]
            count = 0 if service in web_only else (workers_per_service or {}).get(service, 1)
            for index in range(count):
                suffix = "" if index == 0 else f"-{index + 1}"
                self.commands[f"{service}-{WORKER}{suffix}"] = [WORKER, service]
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, int] = dict.fromkeys(self.commands, 0)
        self.exits: list[tuple[str, int, float]] = []
        """Processes that exited on their own: (name, return code, monotonic time)."""
        self._held: set[str] = set()
        self._lock = threading.RLock()
        self._supervisor: threading.Thread | None = None
        self._supervising = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Processes:
        self.start_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_supervising()
        self.stop_all()

    def start_all(self, timeout: float = 90) -> None:
        for name in self.commands:
            self.start(name)
        self.wait_ready(timeout=timeout)

    def start(self, name: str) -> None:
        with self._lock:
            if name in self.running and self.running[name].poll() is None:
                return
            log = (self.log_dir / f"{name}.log").open("ab")
            self.running[name] = subprocess.Popen(
                [sys.executable, "-m", "shared.cli", *self.commands[name]],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            self.starts[name] += 1

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group: gunicorn's workers die with their arbiter."""
        proc = self.running.get(name)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGKILL:
            proc.wait(timeout=30)

    def restart(self, name: str) -> None:
        with self._lock:
            self.kill(name)
            self.start(name)

    def crash(self, name: str) -> None:
        """SIGKILL, and keep it down (the supervisor leaves it) until :meth:`recover`."""
        with self._lock:
            self._held.add(name)
            self.kill(name)

    def recover(self, name: str) -> None:
        with self._lock:
            self._held.discard(name)
            self.start(name)

    def supervise(self, interval: float = 0.5) -> None:
        """Restart, in a background thread, any process that exits on its own."""
        if self._supervisor is not None:
            return
        self._supervising.set()

        def watch() -> None:
            while self._supervising.is_set():
                with self._lock:
                    for name, proc in list(self.running.items()):
                        code = proc.poll()
                        if code is None or name in self._held:
                            continue
                        self.exits.append((name, code, time.monotonic()))
                        self.start(name)
                time.sleep(interval)

        self._supervisor = threading.Thread(target=watch, name="supervisor", daemon=True)
        self._supervisor.start()

    def stop_supervising(self) -> None:
        self._supervising.clear()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
            self._supervisor = None

    def stop_all(self, timeout: float = 20) -> None:
        self.stop_supervising()
        for name in list(self.running):
            self.kill(name, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in self.running.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(name)
        self.running.clear()

    def names(self, kind: str | None = None) -> list[str]:
        """Process names, optionally only ``web`` or ``worker`` ones."""
        return [n for n in self.commands if kind is None or n.split("-")[1] == kind]

    def alive(self, name: str) -> bool:
        proc = self.running.get(name)
        return proc is not None and proc.poll() is None

    # --- HTTP --------------------------------------------------------------------------------

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def wait_ready(self, services: Iterable[str] | None = None, timeout: float = 90) -> None:
        """Until every web process answers /readyz with 200 (database and broker reachable)."""
        self._wait_for("/readyz", "ready", services, timeout, exited_fails=True)

    def wait_alive(self, services: Iterable[str] | None = None, timeout: float = 60) -> None:
        """Until every web process answers /healthz (the process serves; unlike /readyz, this
        holds while the broker or the database is down)."""
        self._wait_for("/healthz", "alive", services, timeout, exited_fails=False)

    def _wait_for(
        self,
        path: str,
        what: str,
        services: Iterable[str] | None,
        timeout: float,
        *,
        exited_fails: bool,
    ) -> None:
        pending = set(services or self.services)
        deadline = time.monotonic() + timeout
        while pending:
            for service in list(pending):
                name = f"{service}-{WEB}"
                if exited_fails and name in self.running and self.running[name].poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.log_tail(name)}")
                try:
                    with urllib.request.urlopen(self.url(service) + path, timeout=2) as r:
                        if r.status == 200:
                            pending.discard(service)
                except (urllib.error.URLError, OSError):
                    pass
            if pending and time.monotonic() > deadline:
                tails = "\n".join(self.log_tail(f"{s}-{WEB}") for s in pending)
                raise TimeoutError(f"not {what} after {timeout}s: {sorted(pending)}\n{tails}")
            if pending:
                time.sleep(0.2)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return f"[{name}: no log]"
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {name} ---\n" + "\n".join(text)
