"""Fixtures of the aggregator's tests: a migrated database and feedback events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest

from aggregator.migrate import migrate
from koe_kit import events
from koe_kit.db import make_engine, session_factory

PAGE_URL = "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html"


@pytest.fixture
def migrated_url(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
def sessions(migrated_url: str) -> Iterator:
    engine = make_engine(migrated_url)
    yield session_factory(engine)
    engine.dispose()


def feedback(
    time: str | datetime,
    answers: dict[str, str],
    *,
    page_id: str = "u-5f1c9a2d7e3b4c60",
    title: str | None = "津市の自治体DX取組状況",
    division: str | None = "somu-dx",
    event_id: str | None = None,
) -> dict:
    """A schema-valid koe.feedback.submitted.v1 event, built the way the relay builds it."""
    event_id = event_id or str(uuid.uuid4())
    moment = events.parse_time(time) if isinstance(time, str) else time
    return events.make_event(
        "koe.feedback.submitted.v1",
        source="koe/feedback",
        subject=page_id,
        event_id=event_id,
        time=moment,
        data={
            "response_id": event_id,
            "page_id": page_id,
            "page_url": PAGE_URL,
            "page_title": title,
            "division": division,
            "locale": "ja",
            "answers": answers,
        },
    )


@pytest.fixture
def make_feedback():
    return feedback
