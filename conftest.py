"""Fixtures every test layer shares: real PostgreSQL, a real broker, a real SMTP server.

- PostgreSQL: the server running on this machine (KOE_TEST_PG, default
  postgresql://postgres@127.0.0.1:5432/postgres); each test gets a database of
  its own, dropped afterwards.
- Broker: a fresh in-memory Tansu per test (it starts in well under a second),
  so every test has its own topics, offsets and groups.
- SMTP: an aiosmtpd server in the test process, which can be told to fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from koe_kit.local_broker import LocalBroker
from koe_kit.smtp_sink import SmtpSink

PG_ADMIN_URL = os.environ.get(
    "KOE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

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
def pg_admin():
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    yield engine
    engine.dispose()


@pytest.fixture
def new_pg_database(pg_admin) -> Iterator:
    """Factory: each call creates an empty PostgreSQL database and returns its URL."""
    created: list[str] = []

    def make() -> str:
        name = f"koe_test_{uuid.uuid4().hex[:12]}"
        with pg_admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    yield make
    with pg_admin.connect() as connection:
        for name in created:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    """An empty database of each kind koe supports: the test runs once per kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'koe.db'}"
    return request.getfixturevalue("new_pg_database")()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
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
