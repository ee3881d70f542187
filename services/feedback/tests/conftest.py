"""Fixtures of the feedback service's tests: a migrated database and the app on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from feedback.app import create_app
from feedback.config import load_settings
from feedback.migrate import MIGRATIONS
from feedback.models import OutboxEntry, Response
from koe_kit.db import make_engine, upgrade
from support import CHALLENGE_KEY, CHALLENGE_MAX_NUMBER, solving

REPO = Path(__file__).resolve().parents[3]
SITE = "https://www.info.city.tsu.mie.jp"
PAGE = f"{SITE}/shisei/dx/1234.html"
CMS_KEY = "test-cms-key-" + "c" * 32


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
        "KOE_ALLOWED_ORIGINS": f"{SITE},http://localhost:8000",
        "KOE_PUBLIC_URL": "http://localhost:8000",
        "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
        "KOE_CHALLENGE_MAX_NUMBER": CHALLENGE_MAX_NUMBER,
        "KOE_CMS_KEY": CMS_KEY,
    }


@pytest.fixture
def engine(database_url: str):
    upgrade(database_url, MIGRATIONS)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def app(env: dict[str, str], engine):
    app = solving(create_app(load_settings(env)))
    yield app
    app.extensions["koe.engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def counts(engine):
    """(responses, outbox) row counts, read straight from the database."""

    def read() -> tuple[int, int]:
        with engine.connect() as connection:
            responses = connection.execute(select(func.count()).select_from(Response)).scalar()
            outbox = connection.execute(select(func.count()).select_from(OutboxEntry)).scalar()
        return responses, outbox

    return read
