"""Fixtures every test layer shares: real PostgreSQL, a real broker, a real SMTP server.

- PostgreSQL: the server running on this machine (KOE_TEST_PG, default
  postgresql://postgres@127.0.0.1:5432/postgres); each test gets a database of
  its own, dropped afterwards.
- Broker: a fresh in-memory Tansu per test (it starts in well under a second),
  so every test has its own topics, offsets and groups.
- SMTP: an aiosmtpd server in the test process, which can be told to fail.

With a Docker engine (or KOE_TEST_CONTAINERS=1; KOE_TEST_CONTAINERS=0 forbids it)
the broker is Apache Kafka and the server PostgreSQL in containers started by
testcontainers, with the images docker-compose.yml runs; the tests are the same.
Our machines and CI have no engine and take the local path.
"""

from __future__ import annotations

import base64
import gc
import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from kinds import KINDS, KindError, kind_of, unit_guard
from koe_devkit.local_broker import LocalBroker
from koe_devkit.smtp_sink import SmtpSink
from koe_devkit.testing import postgres_databases

PG_ADMIN_URL = os.environ.get(
    "KOE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REPO = Path(__file__).resolve().parent


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark each test with its kind (tests/kinds.py) as it is collected, before `-m`
    selects: `make test-fast` runs `-m unit`."""
    marked = {mark.name for mark in item.iter_markers() if mark.name in KINDS}
    try:
        kind = kind_of(getattr(item, "fixturenames", ()), marked)
    except KindError as exc:
        raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
    if kind not in marked:
        item.add_marker(kind)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    """A unit test and its fixtures run with the network and subprocesses shut
    (tests/kinds.py)."""
    if item.get_closest_marker("unit") is None:
        return (yield)
    with unit_guard():
        return (yield)


pytest_runtest_call = pytest_runtest_setup


@pytest.fixture(autouse=True)
def _collect_garbage_between_tests(request: pytest.FixtureRequest):
    """Run the garbage collector after each test that may hold a database connection
    (any but a unit test), at a safe point.

    A database connection a test leaves to the garbage collector is rolled back by
    SQLAlchemy's pool finalizer whenever the collector next runs. On CPython 3.11.7
    (this machine's) a finalizer that runs inside `ast.parse` (werkzeug compiles each
    URL rule with it, so every Flask app creation) raises "SystemError: AST
    constructor recursion depth mismatch" in whatever test happens to be there
    (the CPython bug of gh-106905). A unit test connects to no database, and a full
    collection costs 0.1 s a test: most of what `make test-fast` would wait for."""
    yield
    if request.node.get_closest_marker("unit") is None:
        gc.collect()


def docker_engine_available() -> bool:
    """True when a Docker engine answers /_ping (a docker client alone does not)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(2)
            sock.connect(host.removeprefix("unix://"))
        elif host.startswith("tcp://"):
            address, _, port = host.removeprefix("tcp://").rpartition(":")
            sock = socket.create_connection((address, int(port)), timeout=2)
        else:
            return False
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(1024).split(b"\r\n", 1)[0]
        return status_line.startswith(b"HTTP/1.") and b" 200 " in status_line
    except OSError:
        return False


def use_containers() -> bool:
    flag = os.environ.get("KOE_TEST_CONTAINERS", "")
    return flag == "1" if flag else docker_engine_available()


def compose_image(service: str) -> str:
    """The image docker-compose.yml runs for `service`: the containers test what ops run."""
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    return compose["services"][service]["image"]


def kafka_container_env(advertised: str) -> dict[str, str]:
    """The apache/kafka container's settings: compose's, but advertising the address the
    tests dial, with a cluster id of its own, and creating topics on first use as the
    local broker does (compose leaves that to its `topics` job)."""
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    env = {
        name: str(value)
        for name, value in compose["services"]["kafka"]["environment"].items()
        if name.startswith("KAFKA_") and name != "KAFKA_AUTO_CREATE_TOPICS_ENABLE"
    }
    env["KAFKA_ADVERTISED_LISTENERS"] = f"PLAINTEXT://{advertised}"
    env["KAFKA_CONTROLLER_QUORUM_VOTERS"] = "1@localhost:9093"
    # In KRaft mode the image's configure script exits without one ("CLUSTER_ID
    # environment variable not set"); this is the form `kafka-storage.sh random-uuid` makes.
    env["CLUSTER_ID"] = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return env


class KafkaInContainer:
    """Apache Kafka (KRaft, one node) in a container, with LocalBroker's interface."""

    def __init__(self) -> None:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy

        from koe_devkit.local_broker import free_port

        # The advertised listener must be the address the tests dial, so the host
        # port is chosen first and bound to the same container listener.
        self.host = os.environ.get("TC_HOST", "127.0.0.1")
        self.port = free_port()
        self.container = (
            DockerContainer(compose_image("kafka"))
            .with_bind_ports(9092, self.port)
            .with_envs(**kafka_container_env(f"{self.host}:{self.port}"))
            .waiting_for(
                LogMessageWaitStrategy(re.compile(r"Kafka Server started")).with_startup_timeout(
                    120
                )
            )
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> KafkaInContainer:
        self.container.start()
        return self

    def stop(self) -> None:
        self.container.stop()


# Small group timings: Tansu answers a JoinGroup after about half the rebalance
# timeout (see ENVIRONMENT.md), so defaults would make every test wait minutes.
FAST_KAFKA_ENV = {
    "KAFKA_MAX_POLL_INTERVAL_MS": "3000",
    "KAFKA_SESSION_TIMEOUT_MS": "3000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "KOE_BATCH_MAX_WAIT_MS": "100",
    "KOE_RETRY_BACKOFF_INITIAL_S": "0.2",
    "KOE_RETRY_BACKOFF_MAX_S": "1",
}


@pytest.fixture
def fast_kafka_env() -> dict[str, str]:
    return dict(FAST_KAFKA_ENV)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """The PostgreSQL server's admin URL: a container's, or the machine's (KOE_TEST_PG)."""
    if not use_containers():
        yield PG_ADMIN_URL
        return
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        compose_image("postgres"),
        username="postgres",
        password="postgres",  # noqa: S106 - a throwaway container's
        dbname="postgres",
        driver="psycopg",
    )
    container.start()
    try:
        yield container.get_connection_url()
    finally:
        container.stop()


@pytest.fixture(scope="session")
def pg_admin(pg_server_url: str):
    engine = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {engine.url}: {exc}")
    yield engine
    engine.dispose()


@pytest.fixture
def new_pg_database(pg_admin) -> Iterator:
    """Factory: each call creates an empty PostgreSQL database and returns its URL."""
    with postgres_databases(pg_admin) as make:
        yield make


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    """An empty database of each kind koe supports: the test runs once per kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'koe.db'}"
    return request.getfixturevalue("new_pg_database")()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker | KafkaInContainer]:
    """A broker of the test's own: fresh topics, offsets and groups."""
    instance: LocalBroker | KafkaInContainer
    if use_containers():
        instance = KafkaInContainer().start()
    else:
        instance = LocalBroker(log_path=tmp_path / "broker.log").start()
    yield instance
    instance.stop()


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpSink]:
    sink = SmtpSink(directory=tmp_path / "mail").start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def chromium() -> Iterator:
    """One headless Chromium for the session; tests open their own contexts (no shared state)."""
    from playwright.sync_api import sync_playwright

    from in_browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
