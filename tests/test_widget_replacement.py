"""A response that replaces the same client's earlier one is counted in its place, once:
the aggregator's batch handler on SQLite and PostgreSQL (the whole pipeline is in
test_widget_spam.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from aggregator.counting.ingest import handle_batch
from aggregator.counting.models import DailyCount, DailyResponse
from aggregator.migrate import migrate
from koe_directory import load_directory
from koe_kit import events
from koe_kit.db import make_engine, session_factory, transaction

DIRECTORY = load_directory(Path(__file__).resolve().parents[1] / "divisions.yaml")

TOKYO = ZoneInfo("Asia/Tokyo")
PAGE_ID = "u-5f1c9a2d7e3b4c60"
PAGE_URL = "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html"
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


@pytest.fixture
def sessions(database_url):
    migrate(database_url)
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def response(answers: dict[str, str], at: datetime, replaces: str | None = None) -> dict:
    response_id = str(uuid.uuid4())
    data = {
        "response_id": response_id,
        "page_id": PAGE_ID,
        "page_url": PAGE_URL,
        "page_title": "津市の自治体DX取組状況",
        "division": "somu-dx",
        "locale": "ja",
        "answers": answers,
    }
    if replaces:
        data["replaces"] = replaces
    event = events.make_event(
        "koe.feedback.submitted.v1",
        source="koe/feedback",
        subject=PAGE_ID,
        data=data,
        event_id=response_id,
        time=at,
    )
    return events.decode(events.encode(event))  # exactly what the consumer would hand over


def run(sessions, *batch: dict) -> None:
    with transaction(sessions) as session:
        handle_batch(session, list(batch), timezone=TOKYO, directory=DIRECTORY, now=T0)


def stats(sessions) -> tuple[int, dict[str, tuple[int, int, int]]]:
    """(responses, {question: (yes, neutral, no)}) over all days."""
    with sessions() as session:
        n = session.scalar(select(func.coalesce(func.sum(DailyResponse.responses), 0)))
        rows = session.execute(
            select(
                DailyCount.question,
                func.sum(DailyCount.yes),
                func.sum(DailyCount.neutral),
                func.sum(DailyCount.no),
            ).group_by(DailyCount.question)
        )
        return n, {q: (y, ne, no) for q, y, ne, no in rows}


FIRST = {"findability": "no", "clarity": "no"}
SECOND = {"findability": "yes", "usefulness": "neutral"}
AFTER_SECOND = {"findability": (1, 0, 0), "clarity": (0, 0, 0), "usefulness": (0, 1, 0)}


def test_a_replacement_in_a_later_batch_takes_the_place_of_the_first(sessions):
    first = response(FIRST, T0)
    second = response(SECOND, T0 + timedelta(minutes=5), replaces=first["id"])

    run(sessions, first)
    assert stats(sessions) == (1, {"findability": (0, 0, 1), "clarity": (0, 0, 1)})
    run(sessions, second)
    assert stats(sessions) == (1, AFTER_SECOND)

    # Redelivered, alone or with the first: nothing changes.
    run(sessions, second)
    run(sessions, first, second)
    assert stats(sessions) == (1, AFTER_SECOND)


def test_a_chain_in_one_batch_and_across_midnight_counts_only_the_last(sessions):
    # 23:58 and 00:03 in Tokyo: the first is un-counted on its own day.
    late = datetime(2026, 11, 20, 14, 58, tzinfo=UTC)
    first = response(FIRST, late)
    second = response({"clarity": "yes"}, late + timedelta(minutes=5), replaces=first["id"])
    third = response(SECOND, late + timedelta(minutes=9), replaces=second["id"])
    other = response({"clarity": "yes"}, late + timedelta(minutes=10))

    run(sessions, first, second, third, other, third)

    n, counts = stats(sessions)
    assert n == 2
    assert counts["findability"] == (1, 0, 0)
    assert counts["clarity"] == (1, 0, 0)  # only `other`'s
    assert counts["usefulness"] == (0, 1, 0)
    with sessions() as session:
        per_day = dict(session.execute(select(DailyResponse.day, DailyResponse.responses)).all())
    assert {day.isoformat(): n for day, n in per_day.items()} == {
        "2026-11-20": 0,
        "2026-11-21": 2,
    }


def test_replacing_a_response_that_was_never_counted_counts_the_new_one(sessions):
    run(sessions, response(SECOND, T0, replaces=str(uuid.uuid4())))

    assert stats(sessions) == (1, {"findability": (1, 0, 0), "usefulness": (0, 1, 0)})
