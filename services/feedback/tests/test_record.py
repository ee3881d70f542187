"""services.record on both databases: PostgreSQL records in one statement, SQLite step
by step, and both must store the same rows and byte for byte the same event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from feedback import services
from feedback.models import ClientGuard, OutboxEntry, Response
from feedback.schemas import Submission
from koe_kit import events
from koe_kit.db import session_factory

PAGE = "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html"
LIMITS = services.Limits(rate_max=2, rate_window_s=600, replace_window_s=1800)
CLIENT = "c" * 64


def submission(token: str | None = None, clarity: str = "yes") -> Submission:
    return Submission(
        page_id="tsu-1234",
        page_url=PAGE,
        page_title="津市の自治体DX取組状況",
        division="somu-dx",
        locale="ja",
        answers={"clarity": clarity},
        client_token=token,
    )


@pytest.fixture
def record(engine):
    sessions = session_factory(engine)

    def run(sent: Submission, at: datetime) -> services.Recorded:
        with sessions() as session, session.begin():
            return services.record(session, sent, at, CLIENT, LIMITS)

    return run


def rows(engine):
    with engine.connect() as connection:
        responses = {r.id: r.replaces for r in connection.execute(select(Response))}
        payloads = connection.execute(select(OutboxEntry.payload).order_by(OutboxEntry.id))
        guard = connection.execute(select(ClientGuard)).one()
    return responses, payloads.scalars().all(), guard


def test_events_are_exactly_what_build_event_makes(record, engine):
    at = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    first, second = submission(clarity="no"), submission(clarity="yes")
    one = record(first, at)
    two = record(second, at + timedelta(seconds=30))

    assert two.replaces == one.response_id
    responses, payloads, guard = rows(engine)
    assert responses == {one.response_id: None, two.response_id: one.response_id}
    expected = [
        services.build_event(first, one.response_id, at),
        services.build_event(second, two.response_id, at + timedelta(seconds=30), one.response_id),
    ]
    assert payloads == [events.encode(e).decode("utf-8") for e in expected]
    assert (guard.window_count, guard.last_response_id) == (2, two.response_id)


def test_over_the_limit_and_a_token_seen_before_leave_everything_as_it_was(record, engine):
    at = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    token = str(uuid.uuid4())
    first = record(submission(token), at)
    second = record(submission(), at + timedelta(seconds=1))
    before = rows(engine)

    with pytest.raises(services.RateLimited) as limited:
        record(submission(), at + timedelta(seconds=2))
    assert limited.value.retry_after_s == 598
    # The retry is answered with its response even at the limit, and spends nothing.
    assert record(submission(token), at + timedelta(seconds=3)) == (first.response_id, None)

    after = rows(engine)
    assert after[:2] == before[:2]
    guard_before, guard_after = before[2], after[2]
    assert guard_after == guard_before
    assert (guard_after.window_count, guard_after.last_response_id) == (2, second.response_id)
