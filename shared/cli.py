"""The ``opora`` command: run the system, its services and workers, and operate them."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from shared.config import APPS, CONSOLE, DEFAULT_PORTS, SERVICES, ConfigError, load_settings

service_arg = click.argument("service", type=click.Choice(SERVICES))
app_arg = click.argument("service", type=click.Choice(APPS))


@click.group(help="Opora: interagency support of families with children.")
def cli() -> None:
    pass


def main() -> None:
    try:
        cli()
    except ConfigError as exc:
        click.echo(f"opora: {exc}", err=True)
        sys.exit(2)


def _logging(service: str) -> None:
    from shared.logging import configure_logging

    configure_logging(service, load_settings(service).log_level)


# --- running ------------------------------------------------------------------------------------


@cli.command()
@app_arg
@click.option("--bind", default=None, help="HOST:PORT (default 127.0.0.1:<service port>)")
@click.option(
    "--workers", type=int, default=None, help="gunicorn workers (default WEB_CONCURRENCY)"
)
def web(service: str, bind: str | None, workers: int | None) -> None:
    """Serve a service's HTTP API (or the console's pages) with gunicorn."""
    from gunicorn.app.base import BaseApplication

    settings = load_settings(service)
    _logging(service)

    class Application(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", bind or f"127.0.0.1:{DEFAULT_PORTS[service]}")
            self.cfg.set("workers", workers or settings.web_concurrency)
            self.cfg.set("timeout", 30)
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("accesslog", None)
            self.cfg.set("preload_app", False)  # engines and connections are made after fork
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                self.cfg.set("child_exit", _forget_worker_metrics)

        def load(self) -> Any:
            return importlib.import_module(f"services.{service}.app").create_app()

    Application().run()


def _forget_worker_metrics(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


@cli.command()
@service_arg
def worker(service: str) -> None:
    """Run a service's worker: event consumer, outbox relay, retries and periodic jobs."""
    from shared.worker import Worker

    _logging(service)
    Worker(load_settings(service)).run()


@cli.command()
@click.option("--no-demo", is_flag=True, help="start with empty databases")
def up(no_demo: bool) -> None:
    """Start the whole system on this machine: no servers needed (SQLite, file-backed broker)."""
    os.environ.setdefault("OPORA_MODE", "embedded")
    settings = load_settings("registry")
    if not settings.embedded:
        raise click.ClickException(
            "`opora up` is the embedded mode; in production run web and worker per service"
        )
    from shared import db

    for service in APPS:
        db.upgrade(service, load_settings(service).database_url)
    if not no_demo:
        from shared import demo

        demo.seed()
    children: dict[str, subprocess.Popen[bytes]] = {}
    logs = settings.data_dir / "logs"
    logs.mkdir(exist_ok=True)

    def start(name: str, args: list[str]) -> None:
        log_file = (logs / f"{name}.log").open("ab")
        children[name] = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *args], stdout=log_file, stderr=subprocess.STDOUT
        )

    commands = {}
    for service in SERVICES:
        commands[f"{service}-web"] = ["web", service, "--workers", "1"]
        commands[f"{service}-worker"] = ["worker", service]
    commands[f"{CONSOLE}-web"] = ["web", CONSOLE, "--workers", "2"]
    for name, args in commands.items():
        start(name, args)
    not_ready = _wait_ready(APPS, timeout=120)
    _print_welcome(settings.data_dir, not_ready)
    stopping = False

    def _stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stopping:
        time.sleep(1)
        for name, proc in list(children.items()):
            if proc.poll() is not None and not stopping:
                click.echo(
                    f"{name} exited with {proc.returncode}; restarting (see {logs / (name + '.log')})"
                )
                start(name, commands[name])
    click.echo("stopping...")
    for proc in children.values():
        proc.terminate()
    for proc in children.values():
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_ready(apps: tuple[str, ...], timeout: float) -> list[str]:
    """Until every web process answers /readyz (or ``timeout``); returns those that did not."""
    import urllib.error
    import urllib.request

    pending = list(apps)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for app in list(pending):
            url = f"http://127.0.0.1:{DEFAULT_PORTS[app]}/readyz"
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        pending.remove(app)
            except (urllib.error.URLError, OSError):
                pass
        if pending:
            time.sleep(0.3)
    return pending


def _opora_command() -> str:
    """How to run ``opora`` as the banner prints it: the venv's script is not on PATH."""
    script = Path(sys.executable).with_name("opora")
    if script.exists():
        try:
            return str(script.relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    return f"{sys.executable} -m shared.cli"


def _print_welcome(data_dir: Path, not_ready: list[str]) -> None:
    console = f"http://127.0.0.1:{DEFAULT_PORTS[CONSOLE]}"
    click.echo(f"Opora console: {console}   (open it in a browser and sign in as a demo person)")
    if not_ready:
        click.echo(
            f"Not ready yet: {', '.join(not_ready)} (see {data_dir / 'logs'}); they keep starting."
        )
    click.echo("Opora is up (embedded mode: SQLite files, file-backed broker, no servers).")
    for service in SERVICES:
        port = DEFAULT_PORTS[service]
        click.echo(
            f"  {service:<14} http://127.0.0.1:{port}   (API docs: http://127.0.0.1:{port}/docs)"
        )
    click.echo(f"Data, logs and sent emails: {data_dir}")
    if (data_dir / "demo-keys.txt").exists():
        click.echo(
            f"Demo agency systems' API keys: {data_dir / 'demo-keys.txt'} "
            "(README: 'Walkthrough: one family's story')"
        )
    opora = _opora_command()
    click.echo(
        f"Get a token:   {opora} token --role coordinator --sub demo-coordinator "
        "--agency family-centre"
    )
    click.echo(
        f'Try:           curl -H "Authorization: Bearer $({opora} token --role coordinator)" '
        "http://127.0.0.1:8001/families"
    )
    click.echo("Stop with Ctrl-C.")


# --- database -----------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database migrations, one Alembic history per service."""


@db.command("upgrade")
@click.argument("service", type=click.Choice(APPS), required=False)
@click.option("--revision", default="head")
def db_upgrade(service: str | None, revision: str) -> None:
    """Migrate one service's database (or all of them) to the newest schema."""
    from shared import db as database

    for name in [service] if service else APPS:
        database.upgrade(name, load_settings(name, database_only=True).database_url, revision)
        click.echo(f"{name}: database at {revision}")


@db.command("revision")
@app_arg
@click.option("-m", "--message", required=True)
def db_revision(service: str, message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    from alembic import command

    from shared import db as database

    settings = load_settings(service)
    database.upgrade(service, settings.database_url)
    command.revision(
        database.alembic_config(service, settings.database_url), message=message, autogenerate=True
    )


# --- operations ---------------------------------------------------------------------------------


@cli.group()
def dlq() -> None:
    """Inspect and replay a service's dead-letter queue."""


def _dlq_connection(service: str) -> Any:
    from shared.messaging import broker
    from shared.messaging.topology import Names

    settings = load_settings(service)
    return broker.connect(settings, confirm_publish=True), Names(settings.broker_prefix)


@dlq.command("list")
@service_arg
def dlq_list(service: str) -> None:
    """One line per dead letter: id, type, when, why."""
    from shared.messaging.dlq import list_dead_letters

    conn, names = _dlq_connection(service)
    with conn:
        letters = list_dead_letters(conn, names, service)
    for letter in letters:
        click.echo(json.dumps(letter.summary(), ensure_ascii=False))
    click.echo(f"{len(letters)} dead letter(s) in {names.dlq(service)}", err=True)


@dlq.command("show")
@service_arg
@click.argument("message_id")
def dlq_show(service: str, message_id: str) -> None:
    """A dead letter in full: headers and body."""
    from shared.messaging.dlq import list_dead_letters, render

    conn, names = _dlq_connection(service)
    with conn:
        letters = [x for x in list_dead_letters(conn, names, service) if x.message_id == message_id]
    if not letters:
        raise click.ClickException(f"no dead letter {message_id} in {names.dlq(service)}")
    click.echo(render(letters[0]))


@dlq.command("replay")
@service_arg
@click.argument("message_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="replay every dead letter")
def dlq_replay(service: str, message_ids: tuple[str, ...], replay_all: bool) -> None:
    """Send dead letters back to the service's queue (after fixing what made them fail)."""
    from shared.messaging.dlq import replay

    if not message_ids and not replay_all:
        raise click.UsageError("name message ids, or --all")
    conn, names = _dlq_connection(service)
    with conn:
        count = replay(conn, names, service, None if replay_all else set(message_ids))
    click.echo(f"replayed {count} message(s) to {names.queue(service)}")


@cli.command()
@click.option("--role", "roles", multiple=True, default=["coordinator"], show_default=True)
@click.option("--agency", default=None, help="the agency id the person works for")
@click.option("--sub", "subject", default=None, help="the staff member's id (default demo-<role>)")
@click.option("--name", default=None)
@click.option(
    "--ttl",
    type=click.IntRange(min=1),
    default=8 * 3600,
    show_default=True,
    help="seconds the token lives, at most OPORA_JWT_MAX_LIFETIME_SECONDS (default 12 h)",
)
def token(
    roles: tuple[str, ...], agency: str | None, subject: str | None, name: str | None, ttl: int
) -> None:
    """Print a development bearer token (embedded mode only)."""
    from shared.auth.tokens import issue_dev_token

    settings = load_settings("registry")
    try:
        issued = issue_dev_token(
            settings,
            subject=subject or f"demo-{roles[0]}",
            roles=list(roles),
            agency_id=agency,
            name=name,
            ttl_seconds=ttl,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    click.echo(issued)


@cli.group()
def directory() -> None:
    """The referrals directory of agencies."""


@directory.command("republish")
def directory_republish() -> None:
    """Publish every agency again, for services that learn the directory from its events (the
    registry keeps each agency's kind, which a family's consent names): run once after an
    upgrade that adds such a consumer."""
    from shared import db as database

    republish = importlib.import_module("services.referrals.directory").republish_agencies
    engine = database.make_engine(load_settings("referrals").database_url)
    with database.transaction(database.make_sessionmaker(engine)) as session:
        count = republish(session)
    click.echo(f"republished {count} agencies")


@cli.group()
def apikey() -> None:
    """API keys of agency systems (stored hashed; the key is shown once)."""


@apikey.command("create")
@service_arg
@click.option("--agency", required=True)
@click.option("--name", required=True, help="which system uses the key")
def apikey_create(service: str, agency: str, name: str) -> None:
    from shared import db as database
    from shared.auth.apikeys import create_api_key

    tables = importlib.import_module(f"services.{service}.models").tables
    engine = database.make_engine(load_settings(service).database_url)
    with database.transaction(database.make_sessionmaker(engine)) as session:
        key = create_api_key(session, tables, agency_id=agency, name=name)
    click.echo(key)
    click.echo("Store it now: it is not shown again.", err=True)


@apikey.command("revoke")
@service_arg
@click.argument("key_id")
def apikey_revoke(service: str, key_id: str) -> None:
    from shared import db as database
    from shared.auth.apikeys import revoke_api_key

    tables = importlib.import_module(f"services.{service}.models").tables
    engine = database.make_engine(load_settings(service).database_url)
    with database.transaction(database.make_sessionmaker(engine)) as session:
        revoke_api_key(session, tables, key_id)
    click.echo(f"revoked {key_id}")


@cli.command()
@click.option("--output", type=click.Path(dir_okay=False), default=None)
def asyncapi(output: str | None) -> None:
    """Write the AsyncAPI document of every event, generated from the marshmallow schemas."""
    from shared.asyncapi import render_asyncapi

    text = render_asyncapi()
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


if __name__ == "__main__":
    main()
