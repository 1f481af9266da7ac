"""The deployment files agree with the code.

Checked without Docker or Kubernetes, by parsing docker-compose.yml, deploy/k8s/*.yaml,
deploy/rabbitmq/*, deploy/postgres/init.sql and deploy/Dockerfile against:
- ``shared.config.ENV_VARS``: every environment variable the files set is one the code reads;
- ``shared.cli.cli``: every ``opora ...`` they run parses as a real command with a real service;
- the HTTP contract: web on :8000, liveness ``/healthz``, readiness ``/readyz``;
- the broker topology, both as the contract's literal names and arguments and as
  ``shared.messaging.topology`` declares it (RabbitMQ refuses a re-declaration whose arguments
  differ from the pre-provisioned queue's).
Each test gathers every problem it finds and reports them together.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from shared.cli import cli
from shared.config import ENV_VARS

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S_DIR = DEPLOY / "k8s"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"
SECRET_EXAMPLE = K8S_DIR / "secret.example.yaml"
DEFINITIONS_FILE = DEPLOY / "rabbitmq" / "definitions.json"
RABBITMQ_CONF = DEPLOY / "rabbitmq" / "rabbitmq.conf"
INIT_SQL = DEPLOY / "postgres" / "init.sql"
DOCKERFILE = DEPLOY / "Dockerfile"

SERVICES = ("registry", "referrals", "raids", "notifications")
CONSOLE = "console"
APPS = (*SERVICES, CONSOLE)
HOST_PORTS = {"registry": 8001, "referrals": 8002, "raids": 8003, "notifications": 8004}
CONSOLE_HOST_PORT = 8000
CONTAINER_PORT = 8000
WEB_BIND = f"0.0.0.0:{CONTAINER_PORT}"
NAMESPACE = "opora"

# The broker contract (prefix P = "opora").
PREFIX = "opora"
VHOST = "opora"
DELIVERY_LIMIT = 10
RETRY_TTLS_MS = (1_000, 5_000, 30_000, 120_000, 600_000)
UNROUTED_MAX_LENGTH = 10_000

# Variables that belong to third-party images, allowed only on services running that image.
THIRD_PARTY_ENV_PREFIXES = {
    "postgres": "POSTGRES_",
    "rabbitmq": "RABBITMQ_",
    "axllent/mailpit": "MP_",
}
# Keys a definitions file may hold (RabbitMQ 3.12+ / 4.x export format).
DEFINITIONS_KEYS = {
    "rabbit_version",
    "rabbitmq_version",
    "product_name",
    "product_version",
    "users",
    "vhosts",
    "permissions",
    "topic_permissions",
    "parameters",
    "global_parameters",
    "policies",
    "queues",
    "exchanges",
    "bindings",
}
SECRET_WORDS = ("PASSWORD", "SECRET")
DATABASE_URL_VARS = {f"{s.upper()}_DATABASE_URL" for s in SERVICES}


# --- helpers --------------------------------------------------------------------------------


def report(problems: list[str]) -> str:
    return f"{len(problems)} problem(s):\n  " + "\n  ".join(problems)


def env_names(environment: Any) -> list[str]:
    """Names in a compose `environment` (mapping, or list of KEY=VALUE / KEY)."""
    if environment is None:
        return []
    if isinstance(environment, dict):
        return [str(k) for k in environment]
    return [str(item).split("=", 1)[0] for item in environment]


def env_items(environment: Any) -> dict[str, Any]:
    if environment is None:
        return {}
    if isinstance(environment, dict):
        return {str(k): v for k, v in environment.items()}
    result: dict[str, Any] = {}
    for item in environment:
        key, sep, value = str(item).partition("=")
        result[key] = value if sep else None
    return result


def image_repo(image: str) -> str:
    """'rabbitmq:4.1-management' -> 'rabbitmq'; 'x.org/opora:1@sha256:ab' -> 'x.org/opora'."""
    image = image.split("@", 1)[0]
    head, _, tail = image.rpartition("/")
    repo = tail.split(":", 1)[0]
    return f"{head}/{repo}" if head else repo


def image_tag(image: str) -> str:
    tail = image.split("@", 1)[0].rpartition("/")[2]
    return tail.partition(":")[2]


def as_argv(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def opora_args(argv: list[str]) -> list[str] | None:
    """The arguments after the `opora` executable in argv (tini etc. may come first)."""
    for i, token in enumerate(argv):
        if Path(token).name == "opora":
            return argv[i + 1 :]
    return None


def parse_opora(args: list[str]) -> tuple[tuple[str, ...], dict[str, Any], list[str], str | None]:
    """Resolve `opora ARGS` against the click group without running it.

    Returns (command path, parsed params, the leaf's own args, problem or None).
    """
    command: click.Command = cli
    path: list[str] = []
    rest = list(args)
    while isinstance(command, click.Group):
        shown = " ".join(["opora", *path])
        if not rest or rest[0].startswith("-"):
            return tuple(path), {}, rest, f"`{shown}` needs a subcommand, got {rest!r}"
        name = rest.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            known = ", ".join(sorted(command.commands))
            return tuple(path), {}, rest, f"`{name}` is not a subcommand of `{shown}` ({known})"
        path.append(name)
        command = sub
    try:
        # parses and validates the arguments (click.Choice, unknown options...), runs nothing
        ctx = command.make_context(" ".join(["opora", *path]), list(rest))
    except click.ClickException as exc:
        return (
            tuple(path),
            {},
            rest,
            f"the CLI rejects `opora {shlex.join(args)}`: {exc.format_message()}",
        )
    return tuple(path), dict(ctx.params), rest, None


def check_invocation(
    where: str, argv: list[str], path: tuple[str, ...], service: str, bind: str | None = None
) -> list[str]:
    """argv must run `opora PATH SERVICE [--bind BIND]` and parse."""
    args = opora_args(argv)
    if args is None:
        return [f"{where}: runs {argv!r}, expected `opora {' '.join(path)} {service}`"]
    got_path, params, rest, problem = parse_opora(args)
    if problem:
        return [f"{where}: {problem}"]
    problems = []
    if got_path != path:
        problems.append(
            f"{where}: runs `opora {' '.join(got_path)}`, expected `opora {' '.join(path)}`"
        )
    if not rest or rest[0] != service:
        problems.append(f"{where}: SERVICE should be {service!r} (first argument), got {rest!r}")
    elif service not in params.values():
        problems.append(
            f"{where}: the CLI did not take {service!r} as the SERVICE argument: {params}"
        )
    if bind is not None:
        binds = [rest[i + 1] for i, t in enumerate(rest[:-1]) if t == "--bind"]
        binds += [t.split("=", 1)[1] for t in rest if t.startswith("--bind=")]
        if binds != [bind]:
            problems.append(f"{where}: should bind {bind}, got --bind {binds}")
    return problems


def walk_opora_invocations(argvs: Iterable[tuple[str, list[str]]]) -> list[str]:
    """Every `opora ...` anywhere must parse and name a real service where it takes one."""
    problems = []
    for where, argv in argvs:
        args = opora_args(argv)
        if args is None:
            continue
        _path, params, _rest, problem = parse_opora(args)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        service = params.get("service")
        if service is not None and service not in APPS:
            problems.append(f"{where}: unknown SERVICE {service!r}")
    return problems


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), (
        f"{COMPOSE_FILE} has no `services` mapping"
    )
    return doc


@pytest.fixture(scope="module")
def compose_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def is_opora_service(svc: dict[str, Any]) -> bool:
    return "build" in svc or image_repo(str(svc.get("image", ""))).rpartition("/")[2] == "opora"


@pytest.fixture(scope="module")
def k8s_files() -> list[Path]:
    files = sorted(p for p in K8S_DIR.rglob("*") if p.suffix in (".yaml", ".yml"))
    assert files, f"no manifests under {K8S_DIR}"
    return files


@pytest.fixture(scope="module")
def k8s_objects(k8s_files: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    objects = []
    for path in k8s_files:
        if path == KUSTOMIZATION:
            continue
        for doc in load_yaml_docs(path):
            assert "kind" in doc and "apiVersion" in doc, (
                f"{path.name}: a document without kind/apiVersion"
            )
            objects.append((path.name, doc))
    return objects


def k8s_find(
    objects: list[tuple[str, dict[str, Any]]], kind: str, name: str
) -> dict[str, Any] | None:
    for _file, obj in objects:
        if obj["kind"] == kind and obj.get("metadata", {}).get("name") == name:
            return obj
    return None


def pod_containers(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind of container, container) of a workload's pod template."""
    spec = obj.get("spec", {})
    pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get(
        "template", {}
    ).get("spec", {})
    for key in ("initContainers", "containers"):
        for container in pod.get(key) or []:
            yield key, container


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("spec", {}).get("template", {}).get("spec", {})


def container_argv(container: dict[str, Any]) -> list[str]:
    return as_argv(container.get("command")) + as_argv(container.get("args"))


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return json.loads(DEFINITIONS_FILE.read_text(encoding="utf-8"))


def conf_settings(path: Path) -> dict[str, str]:
    settings = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not a `key = value` line: {line!r}"
            settings[key.strip()] = value.strip()
    return settings


# --- docker-compose.yml -----------------------------------------------------------------------


def test_compose_is_compose_spec_without_version(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the compose spec has no `version:` key; remove it"


def test_compose_environment_names_are_known(compose_services: dict[str, dict[str, Any]]) -> None:
    problems = []
    for name, svc in compose_services.items():
        prefix = THIRD_PARTY_ENV_PREFIXES.get(image_repo(str(svc.get("image", ""))))
        if is_opora_service(svc) and "env_file" in svc:
            problems.append(
                f"{name}: env_file hides variable names from this check; use `environment`"
            )
        for var in env_names(svc.get("environment")):
            if var in ENV_VARS or (prefix and var.startswith(prefix)):
                continue
            allowed = f" or {prefix}*" if prefix else ""
            problems.append(f"{name}: {var} is not in shared.config.ENV_VARS{allowed}")
    assert not problems, report(problems)


def test_compose_has_web_worker_and_migration_per_service(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    problems = []
    for s in SERVICES:
        expected = {
            f"migrate-{s}": (("db", "upgrade"), None),
            f"{s}-web": (("web",), WEB_BIND),
            f"{s}-worker": (("worker",), None),
        }
        for name, (path, bind) in expected.items():
            svc = compose_services.get(name)
            if svc is None:
                problems.append(f"no compose service {name!r}")
                continue
            argv = as_argv(svc.get("entrypoint")) + as_argv(svc.get("command"))
            problems += check_invocation(name, argv, path, s, bind)
    assert not problems, report(problems)


def test_compose_opora_commands_are_real(compose_services: dict[str, dict[str, Any]]) -> None:
    problems = []
    for name, svc in compose_services.items():
        argv = as_argv(svc.get("entrypoint")) + as_argv(svc.get("command"))
        if is_opora_service(svc) and opora_args(argv) is None:
            problems.append(f"{name}: runs the opora image without an `opora` command ({argv!r})")
    problems += walk_opora_invocations(
        (name, as_argv(svc.get("entrypoint")) + as_argv(svc.get("command")))
        for name, svc in compose_services.items()
    )
    assert not problems, report(problems)


def host_port_pairs(ports: list[Any]) -> set[tuple[str, str]]:
    pairs = set()
    for port in ports or []:
        if isinstance(port, dict):
            pairs.add((str(port.get("published")), str(port.get("target"))))
        else:
            parts = str(port).split("/")[0].split(":")
            if len(parts) >= 2:
                pairs.add((parts[-2], parts[-1]))
    return pairs


def test_compose_web_ports(compose_services: dict[str, dict[str, Any]]) -> None:
    problems = []
    for s, host in HOST_PORTS.items():
        svc = compose_services.get(f"{s}-web", {})
        pairs = host_port_pairs(svc.get("ports"))
        if (str(host), str(CONTAINER_PORT)) not in pairs:
            problems.append(f"{s}-web: should publish {host}:{CONTAINER_PORT}, has {sorted(pairs)}")
        for worker in (f"{s}-worker", f"migrate-{s}"):
            if compose_services.get(worker, {}).get("ports"):
                problems.append(f"{worker}: serves no HTTP, should publish no ports")
    assert not problems, report(problems)


def test_compose_start_order(compose_services: dict[str, dict[str, Any]]) -> None:
    """Migrations before web and worker; servers healthy before anything uses them."""
    problems = []

    def deps(name: str) -> dict[str, str]:
        raw = compose_services.get(name, {}).get("depends_on") or {}
        if isinstance(raw, list):
            return dict.fromkeys(raw, "service_started")
        return {k: (v or {}).get("condition", "service_started") for k, v in raw.items()}

    def closure(name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            for dep in deps(todo.pop()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    for name in compose_services:
        for dep, condition in deps(name).items():
            if dep not in compose_services:
                problems.append(f"{name}: depends on unknown service {dep!r}")
            elif dep in ("postgres", "rabbitmq") and condition != "service_healthy":
                problems.append(f"{name}: should wait for {dep} with condition service_healthy")
            elif condition == "service_completed_successfully":
                restart = str(compose_services[dep].get("restart", "no"))
                if restart not in ("no", "on-failure") and not restart.startswith("on-failure:"):
                    problems.append(f"{dep}: a one-shot must not have restart {restart!r}")
    for s in SERVICES:
        migrate = f"migrate-{s}"
        if deps(migrate).get("postgres") != "service_healthy":
            problems.append(f"{migrate}: should depend on postgres (service_healthy)")
        for name in (f"{s}-web", f"{s}-worker"):
            if deps(name).get(migrate) != "service_completed_successfully":
                problems.append(
                    f"{name}: should depend on {migrate} (service_completed_successfully)"
                )
            missing = {"postgres", "rabbitmq"} - closure(name)
            if missing:
                problems.append(f"{name}: starts without waiting for {sorted(missing)}")
    assert not problems, report(problems)


def test_compose_each_service_gets_only_its_own_database(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    problems = []
    for s in SERVICES:
        own = f"{s.upper()}_DATABASE_URL"
        for name in (f"migrate-{s}", f"{s}-web", f"{s}-worker"):
            env = env_items(compose_services.get(name, {}).get("environment"))
            url = str(env.get(own) or "")
            if not re.match(rf"postgresql\+psycopg://[^@]+@postgres:5432/opora_{s}$", url):
                problems.append(
                    f"{name}: {own} should point at postgres:5432/opora_{s}, got {url!r}"
                )
            others = sorted((DATABASE_URL_VARS - {own}) & env.keys())
            if others:
                problems.append(f"{name}: sees other services' databases {others}")
            broker = str(env.get("BROKER_URL") or "")
            if not re.match(rf"amqp://[^@]+@rabbitmq:5672/{VHOST}$", broker):
                problems.append(
                    f"{name}: BROKER_URL should name rabbitmq:5672/{VHOST}, got {broker!r}"
                )
            if env.get("OPORA_MODE") != "production":
                problems.append(f"{name}: OPORA_MODE should be production")
            for var in ("OPORA_JWT_ISSUER", "OPORA_JWT_AUDIENCE"):
                if not env.get(var):
                    problems.append(f"{name}: production mode refuses to start without {var}")
            if env.get("OPORA_BROKER_PREFIX", PREFIX) != PREFIX:
                problems.append(f"{name}: definitions.json is written for prefix {PREFIX!r}")
    assert not problems, report(problems)


def test_compose_has_no_literal_secrets(compose_services: dict[str, dict[str, Any]]) -> None:
    """Passwords come from .env / the shell (`${VAR...}`), never from the file."""
    problems = []
    interpolation = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")
    for name, svc in compose_services.items():
        for var, value in env_items(svc.get("environment")).items():
            if value is None or value == "":
                continue
            value = str(value)
            if any(word in var for word in SECRET_WORDS) and not interpolation.match(value):
                problems.append(
                    f"{name}: {var} is written in the file; take it from the environment"
                )
            match = re.match(r"^[a-z][a-z0-9+.-]*://[^:/@]+:([^@]*)@", value)
            if match and not interpolation.match(match.group(1)):
                problems.append(f"{name}: {var} has a literal password in its URL")
    assert not problems, report(problems)


def test_compose_infrastructure(compose_services: dict[str, dict[str, Any]]) -> None:
    problems = []
    by_repo: dict[str, list[str]] = {}
    for name, svc in compose_services.items():
        by_repo.setdefault(image_repo(str(svc.get("image", ""))), []).append(name)
    for repo in ("postgres", "rabbitmq", "axllent/mailpit"):
        if repo not in by_repo:
            problems.append(f"no service runs the {repo} image")

    pg = compose_services.get("postgres", {})
    if image_repo(str(pg.get("image", ""))) != "postgres":
        problems.append("service `postgres` should run the postgres image")
    mq = compose_services.get("rabbitmq", {})
    mq_image = str(mq.get("image", ""))
    version = re.match(r"(\d+)\.(\d+)", image_tag(mq_image))
    if image_repo(mq_image) != "rabbitmq" or "management" not in image_tag(mq_image):
        problems.append(
            f"service `rabbitmq` should run a rabbitmq:*-management image, has {mq_image!r}"
        )
    elif not version or (int(version[1]), int(version[2])) < (3, 12):
        problems.append(f"rabbitmq image {mq_image!r}: the definitions need RabbitMQ 3.12 or newer")
    for name, svc in (("postgres", pg), ("rabbitmq", mq)):
        test = (svc.get("healthcheck") or {}).get("test")
        if not test or (svc.get("healthcheck") or {}).get("disable"):
            problems.append(f"{name}: needs a healthcheck (others wait for service_healthy)")

    # RabbitMQ loads definitions.json from where rabbitmq.conf says
    load_path = conf_settings(RABBITMQ_CONF).get("load_definitions")
    mounts = {}
    for volume in mq.get("volumes") or []:
        source, _, target = str(volume).partition(":")
        mounts[target.split(":")[0]] = source
    if mounts.get("/etc/rabbitmq/rabbitmq.conf") != "./deploy/rabbitmq/rabbitmq.conf":
        problems.append(
            "rabbitmq: mount ./deploy/rabbitmq/rabbitmq.conf at /etc/rabbitmq/rabbitmq.conf"
        )
    if not load_path or mounts.get(load_path) != "./deploy/rabbitmq/definitions.json":
        problems.append(f"rabbitmq: mount ./deploy/rabbitmq/definitions.json at {load_path}")
    pg_mounts = [str(v) for v in pg.get("volumes") or []]
    if not any(
        v.startswith("./deploy/postgres/init.sql:/docker-entrypoint-initdb.d/") for v in pg_mounts
    ):
        problems.append(
            "postgres: mount ./deploy/postgres/init.sql into /docker-entrypoint-initdb.d/"
        )

    # every bind-mounted file exists, and the image builds from deploy/Dockerfile
    for name, svc in compose_services.items():
        for volume in svc.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if source.startswith(".") and not (ROOT / source).exists():
                problems.append(f"{name}: mounts {source}, which does not exist")
        if "build" in svc:
            build = svc["build"]
            dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            if dockerfile.resolve() != DOCKERFILE:
                problems.append(f"{name}: should build from deploy/Dockerfile, not {dockerfile}")
    assert not problems, report(problems)


def test_compose_healthchecks_only_where_http_is_served(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    """The image's HEALTHCHECK probes /healthz on :8000: only web containers serve it."""
    problems = []
    for s in SERVICES:
        for name in (f"{s}-worker", f"migrate-{s}"):
            if not (compose_services.get(name, {}).get("healthcheck") or {}).get("disable"):
                problems.append(f"{name}: disable the image's HTTP healthcheck")
        if (compose_services.get(f"{s}-web", {}).get("healthcheck") or {}).get("disable"):
            problems.append(f"{s}-web: keep the /healthz healthcheck")
    assert not problems, report(problems)


# --- Kubernetes -----------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_secret_example(k8s_files: list[Path]) -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    resources = kustomization.get("resources") or []
    problems = []
    for resource in resources:
        if not (K8S_DIR / resource).exists():
            problems.append(f"kustomization lists {resource}, which does not exist")
    expected = {p.relative_to(K8S_DIR).as_posix() for p in k8s_files} - {
        KUSTOMIZATION.name,
        SECRET_EXAMPLE.name,
    }
    missing = sorted(expected - set(resources))
    if missing:
        problems.append(f"kustomization.yaml does not list {missing}")
    if SECRET_EXAMPLE.name in resources:
        problems.append("kustomization.yaml must not apply the placeholder secret.example.yaml")
    if kustomization.get("namespace") != NAMESPACE:
        problems.append(f"kustomization.yaml should set namespace {NAMESPACE!r}")
    assert not problems, report(problems)


def test_k8s_objects_live_in_the_namespace(k8s_objects: list[tuple[str, dict[str, Any]]]) -> None:
    problems = []
    if k8s_find(k8s_objects, "Namespace", NAMESPACE) is None:
        problems.append(f"no Namespace {NAMESPACE!r}")
    for file, obj in k8s_objects:
        ns = obj.get("metadata", {}).get("namespace")
        if obj["kind"] != "Namespace" and ns not in (None, NAMESPACE):
            problems.append(
                f"{file}: {obj['kind']} {obj['metadata'].get('name')} in namespace {ns!r}"
            )
    assert not problems, report(problems)


def test_k8s_web_and_worker_per_service(k8s_objects: list[tuple[str, dict[str, Any]]]) -> None:
    problems = []
    for s in SERVICES:
        for role, path, bind in (("web", ("web",), WEB_BIND), ("worker", ("worker",), None)):
            name = f"{s}-{role}"
            deployment = k8s_find(k8s_objects, "Deployment", name)
            if deployment is None:
                problems.append(f"no Deployment {name!r}")
                continue
            containers = [c for kind, c in pod_containers(deployment) if kind == "containers"]
            inits = [c for kind, c in pod_containers(deployment) if kind == "initContainers"]
            mains = [c for c in containers if opora_args(container_argv(c)) is not None]
            if len(mains) != 1:
                problems.append(f"{name}: expected one opora container, found {len(mains)}")
                continue
            problems += check_invocation(
                f"{name}/{mains[0].get('name')}", container_argv(mains[0]), path, s, bind
            )
            migrations = [
                c
                for c in inits
                if not check_invocation("", container_argv(c), ("db", "upgrade"), s)
            ]
            if not migrations:
                problems.append(f"{name}: no init container runs `opora db upgrade {s}`")
    assert not problems, report(problems)


def resolve_port(container: dict[str, Any], port: Any) -> int | None:
    if isinstance(port, int):
        return port
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return None


def test_k8s_probes_and_services(k8s_objects: list[tuple[str, dict[str, Any]]]) -> None:
    problems = []
    for s in SERVICES:
        web = k8s_find(k8s_objects, "Deployment", f"{s}-web")
        worker = k8s_find(k8s_objects, "Deployment", f"{s}-worker")
        if web is None or worker is None:
            problems.append(f"{s}: web or worker Deployment missing")
            continue
        for kind, c in pod_containers(web):
            if kind != "containers" or opora_args(container_argv(c)) is None:
                continue
            where = f"{s}-web/{c.get('name')}"
            ports = [p.get("containerPort") for p in c.get("ports") or []]
            if CONTAINER_PORT not in ports:
                problems.append(
                    f"{where}: should declare containerPort {CONTAINER_PORT}, has {ports}"
                )
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = (c.get(probe) or {}).get("httpGet") or {}
                if get.get("path") != path:
                    problems.append(f"{where}: {probe} should GET {path}, has {get.get('path')!r}")
                elif resolve_port(c, get.get("port")) != CONTAINER_PORT:
                    problems.append(f"{where}: {probe} should probe port {CONTAINER_PORT}")
            startup = (c.get("startupProbe") or {}).get("httpGet")
            if startup and startup.get("path") != "/healthz":
                problems.append(f"{where}: startupProbe should GET /healthz")
        if pod_spec(worker).get("terminationGracePeriodSeconds") is None:
            problems.append(f"{s}-worker: set terminationGracePeriodSeconds (graceful stop)")
        for _kind, c in pod_containers(worker):
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if (c.get(probe) or {}).get("httpGet"):
                    problems.append(
                        f"{s}-worker/{c.get('name')}: the worker serves no HTTP ({probe})"
                    )

        service = k8s_find(k8s_objects, "Service", s)
        if service is None:
            problems.append(f"no Service {s!r} in front of {s}-web")
            continue
        selector = service.get("spec", {}).get("selector") or {}
        web_labels = web.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
        worker_labels = (
            worker.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
        )
        if not selector or any(web_labels.get(k) != v for k, v in selector.items()):
            problems.append(f"Service {s}: selector {selector} does not select {s}-web's pods")
        if selector and all(worker_labels.get(k) == v for k, v in selector.items()):
            problems.append(f"Service {s}: selector also selects the worker's pods")
        web_container = next(
            (c for k, c in pod_containers(web) if k == "containers" and c.get("ports")), {}
        )
        for port in service.get("spec", {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if resolve_port(web_container, target) != CONTAINER_PORT:
                problems.append(
                    f"Service {s}: targetPort {target!r} is not the web's :{CONTAINER_PORT}"
                )
    for _file, obj in k8s_objects:
        if obj["kind"] != "Deployment":
            continue
        match = obj.get("spec", {}).get("selector", {}).get("matchLabels") or {}
        labels = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
        if not match or any(labels.get(k) != v for k, v in match.items()):
            problems.append(
                f"Deployment {obj['metadata']['name']}: selector does not match its pods"
            )
    assert not problems, report(problems)


def test_k8s_opora_commands_are_real(k8s_objects: list[tuple[str, dict[str, Any]]]) -> None:
    problems = walk_opora_invocations(
        (f"{file}: {obj['metadata']['name']}/{c.get('name')}", container_argv(c))
        for file, obj in k8s_objects
        for _kind, c in pod_containers(obj)
    )
    for file, obj in k8s_objects:
        for _kind, c in pod_containers(obj):
            if c.get("command") and opora_args(as_argv(c.get("command"))) is not None:
                problems.append(
                    f"{file}: {obj['metadata']['name']}/{c.get('name')}: pass the opora command as "
                    "`args`; `command` replaces the image's tini entrypoint"
                )
    assert not problems, report(problems)


def collect_config(
    k8s_objects: list[tuple[str, dict[str, Any]]],
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    configmaps: dict[str, set[str]] = {}
    secrets: dict[str, set[str]] = {}
    for _file, obj in k8s_objects:
        name = obj.get("metadata", {}).get("name")
        if obj["kind"] == "ConfigMap":
            configmaps[name] = set((obj.get("data") or {}).keys())
        elif obj["kind"] == "Secret":
            secrets[name] = set((obj.get("stringData") or {}).keys()) | set(
                (obj.get("data") or {}).keys()
            )
    return configmaps, secrets


def test_k8s_environment_names_are_known(k8s_objects: list[tuple[str, dict[str, Any]]]) -> None:
    configmaps, secrets = collect_config(k8s_objects)
    problems = []
    for kind, store in (("ConfigMap", configmaps), ("Secret", secrets)):
        for name, keys in store.items():
            for key in sorted(keys - ENV_VARS.keys()):
                problems.append(f"{kind} {name}: key {key} is not in shared.config.ENV_VARS")
    for name, keys in configmaps.items():
        for key in sorted(keys):
            if any(w in key for w in SECRET_WORDS) or key in DATABASE_URL_VARS | {"BROKER_URL"}:
                problems.append(
                    f"ConfigMap {name}: {key} carries credentials; it belongs in a Secret"
                )

    for file, obj in k8s_objects:
        for _kind, c in pod_containers(obj):
            where = f"{file}: {obj['metadata']['name']}/{c.get('name')}"
            for source in c.get("envFrom") or []:
                if "prefix" in source:
                    problems.append(f"{where}: envFrom prefix renames variables; drop it")
                ref = source.get("configMapRef") or source.get("secretRef") or {}
                store = configmaps if "configMapRef" in source else secrets
                if ref.get("name") not in store and not ref.get("optional"):
                    problems.append(f"{where}: envFrom names unknown {ref.get('name')!r}")
            for entry in c.get("env") or []:
                var = entry.get("name")
                if var not in ENV_VARS:
                    problems.append(f"{where}: {var} is not in shared.config.ENV_VARS")
                value_from = entry.get("valueFrom") or {}
                for ref_kind, store in (("secretKeyRef", secrets), ("configMapKeyRef", configmaps)):
                    ref = value_from.get(ref_kind)
                    if ref is None:
                        continue
                    if ref.get("key") != var:
                        problems.append(
                            f"{where}: {var} reads key {ref.get('key')!r}; keys are named after "
                            "the variable they fill"
                        )
                    if ref.get("key") not in store.get(ref.get("name"), set()) and not ref.get(
                        "optional"
                    ):
                        problems.append(
                            f"{where}: {var} refers to missing {ref.get('name')}/{ref.get('key')}"
                        )
                if "value" in entry and any(w in str(var) for w in SECRET_WORDS):
                    problems.append(f"{where}: {var} is written in the manifest; use a Secret")
    assert not problems, report(problems)


def effective_env(
    c: dict[str, Any], configmaps: dict[str, set[str]], secrets: dict[str, set[str]]
) -> set[str]:
    names: set[str] = set()
    for source in c.get("envFrom") or []:
        if "configMapRef" in source:
            names |= configmaps.get(source["configMapRef"].get("name"), set())
        if "secretRef" in source:
            names |= secrets.get(source["secretRef"].get("name"), set())
    names |= {e.get("name") for e in c.get("env") or []}
    return names


def test_k8s_each_service_gets_only_its_own_database(
    k8s_objects: list[tuple[str, dict[str, Any]]],
) -> None:
    configmaps, secrets = collect_config(k8s_objects)
    problems = []
    for s in SERVICES:
        own = f"{s.upper()}_DATABASE_URL"
        for role in ("web", "worker"):
            deployment = k8s_find(k8s_objects, "Deployment", f"{s}-{role}")
            for _kind, c in pod_containers(deployment or {}):
                names = effective_env(c, configmaps, secrets)
                where = f"{s}-{role}/{c.get('name')}"
                if own not in names or "BROKER_URL" not in names:
                    problems.append(f"{where}: needs {own} and BROKER_URL")
                others = sorted((DATABASE_URL_VARS - {own}) & names)
                if others:
                    problems.append(f"{where}: sees other services' databases {others}")
    assert not problems, report(problems)


def test_k8s_containers_are_bounded_and_unprivileged(
    k8s_objects: list[tuple[str, dict[str, Any]]],
) -> None:
    configmaps_data = {
        obj["metadata"]["name"]: obj.get("data") or {}
        for _f, obj in k8s_objects
        if obj["kind"] == "ConfigMap"
    }
    problems = []
    for file, obj in k8s_objects:
        if obj["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet"):
            continue
        pod = pod_spec(obj)
        for kind, c in pod_containers(obj):
            where = f"{file}: {obj['metadata']['name']}/{c.get('name')}"
            resources = c.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            if not {"cpu", "memory"} <= requests.keys() or "memory" not in limits:
                problems.append(f"{where}: set requests (cpu, memory) and a memory limit")
            security = c.get("securityContext") or {}
            non_root = security.get(
                "runAsNonRoot", (pod.get("securityContext") or {}).get("runAsNonRoot")
            )
            if non_root is not True:
                problems.append(f"{where}: runAsNonRoot should be true")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation should be false")
            if security.get("readOnlyRootFilesystem"):
                mounts = {m.get("mountPath") for m in c.get("volumeMounts") or []}
                env: dict[str, Any] = {}
                for source in c.get("envFrom") or []:
                    env |= configmaps_data.get((source.get("configMapRef") or {}).get("name"), {})
                env |= {e.get("name"): e.get("value") for e in c.get("env") or []}  # env wins
                wanted = {"/tmp"} | {
                    env[v] for v in ("PROMETHEUS_MULTIPROC_DIR", "OPORA_DATA_DIR") if env.get(v)
                }
                if kind == "initContainers":
                    wanted -= {env.get("OPORA_DATA_DIR")}
                for path in sorted(p for p in wanted - mounts if p):
                    problems.append(
                        f"{where}: read-only root filesystem, but nothing writable at {path}"
                    )
    assert not problems, report(problems)


def test_k8s_images_are_the_kustomized_opora_image(
    k8s_objects: list[tuple[str, dict[str, Any]]],
) -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    names = {i.get("name") for i in kustomization.get("images") or []}
    problems = []
    for file, obj in k8s_objects:
        for _kind, c in pod_containers(obj):
            repo = image_repo(str(c.get("image", "")))
            if opora_args(container_argv(c)) is not None and repo not in names:
                problems.append(
                    f"{file}: {obj['metadata']['name']}/{c.get('name')}: image {repo!r} is not "
                    f"under kustomization `images` ({sorted(names)}), so it cannot be retagged"
                )
    assert not problems, report(problems)


# --- RabbitMQ -------------------------------------------------------------------------------


def expected_queues() -> dict[str, dict[str, Any]]:
    """The contract's queues and their arguments, literally."""
    queues: dict[str, dict[str, Any]] = {
        f"{PREFIX}.unrouted": {"x-max-length": UNROUTED_MAX_LENGTH, "x-overflow": "drop-head"},
    }
    for s in SERVICES:
        queues[f"{PREFIX}.{s}"] = {
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": f"{PREFIX}.dlx",
            "x-dead-letter-routing-key": f"{PREFIX}.{s}",
        }
        queues[f"{PREFIX}.{s}.dlq"] = {}
        for n, ttl in enumerate(RETRY_TTLS_MS, start=1):
            queues[f"{PREFIX}.{s}.retry.{n}"] = {
                "x-message-ttl": ttl,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": f"{PREFIX}.{s}",
            }
    return queues


def expected_bindings() -> set[tuple[str, str, str]]:
    bindings = {(f"{PREFIX}.unrouted", f"{PREFIX}.unrouted", "")}
    for s in SERVICES:
        bindings.add((f"{PREFIX}.dlx", f"{PREFIX}.{s}.dlq", f"{PREFIX}.{s}"))
        for n in range(1, len(RETRY_TTLS_MS) + 1):
            bindings.add((f"{PREFIX}.retry", f"{PREFIX}.{s}.retry.{n}", f"{PREFIX}.{s}.retry.{n}"))
    return bindings


def test_definitions_format(definitions: dict[str, Any]) -> None:
    problems = []
    unknown = sorted(definitions.keys() - DEFINITIONS_KEYS)
    if unknown:
        problems.append(f"unknown top-level keys {unknown}")
    for key in ("vhosts", "exchanges", "queues", "bindings", "policies"):
        if not isinstance(definitions.get(key), list):
            problems.append(f"`{key}` should be a list")
    if definitions.get("users") or definitions.get("permissions"):
        problems.append(
            "users and permissions stay out of definitions.json (see deploy/rabbitmq/README.md)"
        )
    if VHOST not in {v.get("name") for v in definitions.get("vhosts") or []}:
        problems.append(f"no vhost {VHOST!r}")
    for key in ("exchanges", "queues", "bindings", "policies"):
        for item in definitions.get(key) or []:
            if item.get("vhost") != VHOST:
                problems.append(f"{key}: {item.get('name') or item} is not in vhost {VHOST!r}")
    for key in ("exchanges", "queues"):
        names = [item.get("name") for item in definitions.get(key) or []]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            problems.append(f"{key}: duplicates {duplicates}")
        for item in definitions.get(key) or []:
            if item.get("durable") is not True or item.get("auto_delete") is not False:
                problems.append(f"{key}: {item.get('name')} should be durable and not auto-delete")
    for policy in definitions.get("policies") or []:
        missing = {"name", "pattern", "apply-to", "definition", "priority"} - policy.keys()
        if missing:
            problems.append(f"policy {policy.get('name')}: missing {sorted(missing)}")
    assert not problems, report(problems)


def test_definitions_exchanges(definitions: dict[str, Any]) -> None:
    exchanges = {e["name"]: e for e in definitions.get("exchanges") or []}
    expected = {
        f"{PREFIX}.events": ("topic", {"alternate-exchange": f"{PREFIX}.unrouted"}),
        f"{PREFIX}.unrouted": ("fanout", {}),
        f"{PREFIX}.dlx": ("direct", {}),
        f"{PREFIX}.retry": ("direct", {}),
    }
    problems = []
    for name, (kind, arguments) in expected.items():
        exchange = exchanges.get(name)
        if exchange is None:
            problems.append(f"no exchange {name!r}")
            continue
        if exchange.get("type") != kind:
            problems.append(f"exchange {name}: type should be {kind}, is {exchange.get('type')}")
        if (exchange.get("arguments") or {}) != arguments:
            problems.append(
                f"exchange {name}: arguments should be {arguments}, are {exchange.get('arguments')}"
            )
        if exchange.get("internal"):
            problems.append(f"exchange {name}: must not be internal (services publish to it)")
    assert not problems, report(problems)


def test_definitions_queues_match_the_contract(definitions: dict[str, Any]) -> None:
    queues = {q["name"]: q for q in definitions.get("queues") or []}
    problems = []
    for name, arguments in expected_queues().items():
        queue = queues.get(name)
        if queue is None:
            problems.append(f"no queue {name!r}")
            continue
        actual = queue.get("arguments") or {}
        if actual != arguments:
            problems.append(f"queue {name}: arguments should be {arguments}, are {actual}")
        if actual.get("x-queue-type", "classic") == "quorum":
            limit = actual.get("x-delivery-limit")
            # RabbitMQ 4 drops messages past an implicit limit of 20 when none is set
            if not isinstance(limit, int) or not 0 < limit <= 20:
                problems.append(f"queue {name}: x-delivery-limit should be a whole number 1..20")
            if not actual.get("x-dead-letter-exchange"):
                problems.append(f"queue {name}: a quorum queue needs a dead-letter exchange")
    for name in sorted(queues.keys() - expected_queues().keys()):
        problems.append(f"queue {name!r} is not in the contract")
    assert not problems, report(problems)


def test_definitions_bindings(definitions: dict[str, Any]) -> None:
    exchanges = {e["name"] for e in definitions.get("exchanges") or []}
    queues = {q["name"] for q in definitions.get("queues") or []}
    actual = set()
    problems = []
    for b in definitions.get("bindings") or []:
        actual.add((b.get("source"), b.get("destination"), b.get("routing_key")))
        if b.get("source") not in exchanges:
            problems.append(f"binding from undefined exchange {b.get('source')!r}")
        known = queues if b.get("destination_type") == "queue" else exchanges
        if (
            b.get("destination_type") not in ("queue", "exchange")
            or b.get("destination") not in known
        ):
            problems.append(
                f"binding to undefined {b.get('destination_type')} {b.get('destination')!r}"
            )
    for source, destination, key in sorted(expected_bindings() - actual):
        problems.append(f"no binding {source} -> {destination} with key {key!r}")
    assert not problems, report(problems)


def test_definitions_match_the_code_topology(definitions: dict[str, Any]) -> None:
    """What the workers declare must equal what is pre-provisioned, argument for argument."""
    from shared.messaging import topology

    names = topology.Names(PREFIX)
    code_queues = [topology.unrouted_queue(names)]
    for s in SERVICES:
        code_queues.append(topology.service_queue(names, s, []))
        code_queues.append(topology.dead_letter_queue(names, s))
        code_queues.extend(topology.retry_queues(names, s))
    events = topology.events_exchange(names)
    code_exchanges = {events.name: events}
    queues = {q["name"]: q for q in definitions.get("queues") or []}
    exchanges = {e["name"]: e for e in definitions.get("exchanges") or []}
    bindings = {
        (b.get("source"), b.get("destination"), b.get("routing_key"))
        for b in definitions.get("bindings") or []
    }
    # kombu turns these Queue attributes into x- arguments (seconds become milliseconds)
    extra_arguments = {
        "expires": ("x-expires", 1000),
        "message_ttl": ("x-message-ttl", 1000),
        "max_length": ("x-max-length", 1),
        "max_length_bytes": ("x-max-length-bytes", 1),
        "max_priority": ("x-max-priority", 1),
    }
    problems = []
    for queue in code_queues:
        declared = queues.get(queue.name)
        if declared is None:
            problems.append(f"the code declares queue {queue.name!r}; definitions.json lacks it")
            continue
        arguments = dict(queue.queue_arguments or {})
        for attribute, (argument, factor) in extra_arguments.items():
            value = getattr(queue, attribute, None)
            if value is not None:
                arguments[argument] = int(value * factor)
        if arguments != (declared.get("arguments") or {}):
            problems.append(
                f"queue {queue.name}: the code declares {arguments}, "
                f"definitions.json has {declared.get('arguments')}"
            )
        if bool(queue.durable) != bool(declared.get("durable")):
            problems.append(f"queue {queue.name}: durable differs from the code")
        if queue.exchange is not None and queue.exchange.name:
            code_exchanges[queue.exchange.name] = queue.exchange
            if (queue.exchange.name, queue.name, queue.routing_key or "") not in bindings:
                problems.append(
                    f"the code binds {queue.name} to {queue.exchange.name} "
                    f"with {queue.routing_key!r}; definitions.json does not"
                )
    for exchange in code_exchanges.values():
        declared = exchanges.get(exchange.name)
        if declared is None:
            problems.append(
                f"the code declares exchange {exchange.name!r}; definitions.json lacks it"
            )
            continue
        if exchange.type != declared.get("type"):
            problems.append(
                f"exchange {exchange.name}: type {declared.get('type')}, the code {exchange.type}"
            )
        if (exchange.arguments or {}) != (declared.get("arguments") or {}):
            problems.append(f"exchange {exchange.name}: arguments differ from the code")
        if bool(exchange.durable) != bool(declared.get("durable")):
            problems.append(f"exchange {exchange.name}: durable differs from the code")
    assert not problems, report(problems)


def test_rabbitmq_conf() -> None:
    settings = conf_settings(RABBITMQ_CONF)
    problems = []
    if settings.get("load_definitions") != "/etc/rabbitmq/definitions.json":
        problems.append("load_definitions should be /etc/rabbitmq/definitions.json")
    timeout = settings.get("consumer_timeout", "")
    if not timeout.isdigit() or int(timeout) < 60_000:
        problems.append(f"consumer_timeout should be set, in ms, at least a minute: {timeout!r}")
    if not any(k.startswith("disk_free_limit.") for k in settings):
        problems.append("set disk_free_limit.* (the 50 MB default leaves no room)")
    if not any(k.startswith("vm_memory_high_watermark.") for k in settings):
        problems.append("set vm_memory_high_watermark.*")
    assert not problems, report(problems)


# --- PostgreSQL and the image ---------------------------------------------------------------


def test_init_sql_creates_every_database() -> None:
    sql = INIT_SQL.read_text(encoding="utf-8")
    problems = [f"init.sql does not create opora_{s}" for s in APPS if f"'opora_{s}'" not in sql]
    if "OWNER opora" not in sql:
        problems.append("init.sql should make `opora` the owner of the databases")
    assert not problems, report(problems)


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines: list[str] = []
    buffer = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        lines.append(buffer + stripped)
        buffer = ""
    result = []
    for line in lines:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    problems = []
    args = {}
    for word, rest in instructions:
        if word == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value
    stages = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    if not stages:
        problems.append("no FROM")
        final: list[tuple[str, str]] = []
    else:
        final = instructions[stages[-1] :]
        base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), final[0][1].split()[0])
        if base != "python:3.11-slim":
            problems.append(f"the runtime stage should be python:3.11-slim, is {base}")
    users = [rest for word, rest in final if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the runtime stage should switch to a non-root USER")
    health = " ".join(rest for word, rest in final if word == "HEALTHCHECK")
    if "/healthz" not in health or f":{CONTAINER_PORT}/" not in health:
        problems.append(f"HEALTHCHECK should probe /healthz on :{CONTAINER_PORT}")
    if not any(word == "EXPOSE" and str(CONTAINER_PORT) in rest for word, rest in final):
        problems.append(f"EXPOSE {CONTAINER_PORT}")
    copied = " ".join(rest for word, rest in instructions if word == "COPY")
    for needed in ("pyproject.toml", "README.md", "shared", "services"):
        if not re.search(rf"(^|\s){re.escape(needed)}(\s|/|$)", copied):
            problems.append(f"COPY {needed} into the build")
    cmd = " ".join(rest for word, rest in final if word == "CMD")
    if "opora" not in cmd:
        problems.append("CMD should run opora (compose and Kubernetes replace it)")
    allowed = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
    for word, rest in instructions:
        if word != "ENV":
            continue
        for key in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", rest):
            if key not in ENV_VARS and key not in allowed and not key.startswith("PIP_"):
                problems.append(f"ENV {key} is not in shared.config.ENV_VARS")
    assert not problems, report(problems)


# --- the console ----------------------------------------------------------------------------


def test_compose_console(compose_services: dict[str, dict[str, Any]]) -> None:
    """The console: web only (no worker), migrated first, its own database and no broker, the
    services' APIs by their compose names, and the public URL every service's links use."""
    problems = []
    web = compose_services.get(f"{CONSOLE}-web")
    migrate = compose_services.get(f"migrate-{CONSOLE}")
    if web is None or migrate is None:
        pytest.fail(f"compose needs {CONSOLE}-web and migrate-{CONSOLE}")
    if f"{CONSOLE}-worker" in compose_services:
        problems.append("the console has no worker")
    problems += check_invocation(
        f"{CONSOLE}-web", as_argv(web.get("command")), ("web",), CONSOLE, WEB_BIND
    )
    problems += check_invocation(
        f"migrate-{CONSOLE}", as_argv(migrate.get("command")), ("db", "upgrade"), CONSOLE
    )
    if (str(CONSOLE_HOST_PORT), str(CONTAINER_PORT)) not in host_port_pairs(web.get("ports")):
        problems.append(f"{CONSOLE}-web: should publish {CONSOLE_HOST_PORT}:{CONTAINER_PORT}")
    depends = web.get("depends_on") or {}
    if (depends.get(f"migrate-{CONSOLE}") or {}).get("condition") != (
        "service_completed_successfully"
    ):
        problems.append(f"{CONSOLE}-web: should wait for migrate-{CONSOLE} to complete")
    if not (migrate.get("healthcheck") or {}).get("disable"):
        problems.append(f"migrate-{CONSOLE}: disable the image's HTTP healthcheck")
    for name, svc in ((f"{CONSOLE}-web", web), (f"migrate-{CONSOLE}", migrate)):
        env = env_items(svc.get("environment"))
        url = str(env.get("CONSOLE_DATABASE_URL") or "")
        if not re.match(r"postgresql\+psycopg://[^@]+@postgres:5432/opora_console$", url):
            problems.append(f"{name}: CONSOLE_DATABASE_URL should be postgres:5432/opora_console")
        if DATABASE_URL_VARS & env.keys() or "BROKER_URL" in env:
            problems.append(f"{name}: sees a service's database or the broker")
        if env.get("OPORA_MODE") != "production":
            problems.append(f"{name}: OPORA_MODE should be production")
    env = env_items(web.get("environment"))
    for s in SERVICES:
        expected = f"http://{s}-web:{CONTAINER_PORT}"
        if env.get(f"CONSOLE_{s.upper()}_URL") != expected:
            problems.append(f"{CONSOLE}-web: CONSOLE_{s.upper()}_URL should be {expected}")
    for var in ("CONSOLE_SECRET_KEY", "CONSOLE_OIDC_ISSUER", "CONSOLE_OIDC_CLIENT_ID"):
        if not env.get(var):
            problems.append(f"{CONSOLE}-web: production mode refuses to start without {var}")
    public = {
        str(env_items(svc.get("environment")).get("OPORA_PUBLIC_URL"))
        for name, svc in compose_services.items()
        if is_opora_service(svc) and not name.startswith("migrate-")
    }
    if public != {"${OPORA_PUBLIC_URL:-http://localhost:8000}"}:
        problems.append(f"every service's links should open the console (:8000): {public}")
    assert not problems, report(problems)


def test_k8s_console(k8s_objects: list[tuple[str, dict[str, Any]]]) -> None:
    problems = []
    deployment = k8s_find(k8s_objects, "Deployment", f"{CONSOLE}-web")
    service = k8s_find(k8s_objects, "Service", CONSOLE)
    if deployment is None or service is None:
        pytest.fail(f"Kubernetes needs a Deployment {CONSOLE}-web and a Service {CONSOLE}")
    if k8s_find(k8s_objects, "Deployment", f"{CONSOLE}-worker") is not None:
        problems.append("the console has no worker")
    containers = [c for kind, c in pod_containers(deployment) if kind == "containers"]
    inits = [c for kind, c in pod_containers(deployment) if kind == "initContainers"]
    if len(containers) != 1:
        pytest.fail(f"{CONSOLE}-web: expected one container")
    web = containers[0]
    problems += check_invocation(f"{CONSOLE}-web", container_argv(web), ("web",), CONSOLE, WEB_BIND)
    if not any(
        not check_invocation("", container_argv(c), ("db", "upgrade"), CONSOLE) for c in inits
    ):
        problems.append(f"{CONSOLE}-web: no init container runs `opora db upgrade console`")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (web.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or resolve_port(web, get.get("port")) != CONTAINER_PORT:
            problems.append(f"{CONSOLE}-web: {probe} should GET {path} on :{CONTAINER_PORT}")
    secret_keys = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for e in web.get("env") or []
        if "secretKeyRef" in (e.get("valueFrom") or {})
    }
    for key in ("CONSOLE_DATABASE_URL", "CONSOLE_SECRET_KEY"):
        if key not in secret_keys:
            problems.append(f"{CONSOLE}-web: {key} should come from the Secret")
    if DATABASE_URL_VARS & secret_keys or "BROKER_URL" in secret_keys:
        problems.append(f"{CONSOLE}-web: sees a service's database or the broker")
    config: dict[str, str] = {}
    for source in web.get("envFrom") or []:
        name = (source.get("configMapRef") or {}).get("name")
        found = k8s_find(k8s_objects, "ConfigMap", name) if name else None
        config.update((found or {}).get("data") or {})
    for s in SERVICES:
        expected = f"http://{s}:{CONTAINER_PORT}"
        target = k8s_find(k8s_objects, "Service", s)
        ports = [p.get("port") for p in (target or {}).get("spec", {}).get("ports") or []]
        if config.get(f"CONSOLE_{s.upper()}_URL") != expected or CONTAINER_PORT not in ports:
            problems.append(f"{CONSOLE}-web: CONSOLE_{s.upper()}_URL should be {expected}")
    for var in ("CONSOLE_OIDC_ISSUER", "CONSOLE_OIDC_CLIENT_ID", "OPORA_PUBLIC_URL"):
        if not config.get(var):
            problems.append(f"{CONSOLE}-web: {var} missing from its ConfigMaps")
    selector = service.get("spec", {}).get("selector") or {}
    labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        problems.append(f"Service {CONSOLE}: selector does not select {CONSOLE}-web's pods")
    assert not problems, report(problems)
