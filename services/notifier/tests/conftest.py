"""Notifier fixtures: a migrated database, settings pointing at the test SMTP server,
and alert events made from the schema's example."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest

from koe_directory import load_directory
from koe_kit.db import make_engine
from notifier.config import load_settings
from notifier.handler import AlertHandler
from notifier.migrate import migrate
from notifier.outgoing import Outgoing

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "schemas/examples/koe.alerts.v1/clarity-drop.json"
DIVISIONS = REPO / "divisions.yaml"


@pytest.fixture
def engine(database_url):
    migrate(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def env(database_url, smtp_server) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "KOE_DIVISIONS_FILE": str(DIVISIONS),
        "SMTP_HOST": smtp_server.host,
        "SMTP_PORT": str(smtp_server.port),
        "KOE_SMTP_TIMEOUT_S": "5",
        "MAIL_FROM": "koe <koe@city-tsu.example>",
    }


@pytest.fixture
def settings(env, engine):
    return load_settings(env)


@pytest.fixture
def outgoing(settings, engine) -> Outgoing:
    return Outgoing.from_settings(settings, engine)


@pytest.fixture
def handler(outgoing) -> AlertHandler:
    """The batch handler, for alerts none of which should be dead-lettered."""
    return AlertHandler(outgoing, dead_letters=NoDeadLetters())


class NoDeadLetters:
    """The handler's dead letters where none may come: the test fails on the first."""

    def dead_letter(self, message, reason: str) -> None:
        pytest.fail(f"dead-lettered: {reason}")


@pytest.fixture
def make_alert():
    """A fresh, schema-valid alert event: the example with a new alert id."""
    example = json.loads(EXAMPLE.read_text(encoding="utf-8"))

    def make(*, url: str | None = None, division: str | None = "somu-dx", title=None) -> dict:
        event = copy.deepcopy(example)
        event["id"] = event["data"]["alert_id"] = str(uuid.uuid4())
        page = event["data"]["page"]
        page["division"] = division
        if url is not None:
            page["url"] = url
        if title is not None:
            page["title"] = title
        return event

    return make


@pytest.fixture
def directory():
    return load_directory(DIVISIONS)
