"""services.record on both databases: PostgreSQL records the response and its outbox row
in one statement, SQLite step by step, and both must store the same rows and byte for
byte the same event; whatever the door refuses leaves every table as it was."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from feedback import budgets, services
from feedback.models import OutboxEntry, Response
from feedback.schemas import Submission
from koe_kit import events
from koe_kit.db import session_factory

PAGE = "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html"
RULES = services.Rules(
    budgets=budgets.Budgets(
        one_page=2, all_pages=100, form_one_page=1, form_all_pages=100, new_pages=10
    ),
    replace_window_s=1800,
)
SOURCE = "5" * 32
TABLES = ("responses", "outbox", "answer_tokens", "budgets", "known_pages")


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

    def run(sent: Submission, at: datetime, form: bool = False) -> services.Recorded:
        with sessions() as session, session.begin():
            return services.record(session, sent, at, SOURCE, RULES, form)

    return run


def everything(engine) -> dict[str, list]:
    with engine.connect() as connection:
        return {
            table: sorted(map(tuple, connection.execute(text(f"SELECT * FROM {table}"))), key=str)  # noqa: S608
            for table in TABLES
        }


def test_events_are_exactly_what_build_event_makes(record, engine):
    at = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    token = str(uuid.uuid4())
    first, second = submission(token, clarity="no"), submission(token, clarity="yes")
    one = record(first, at)
    two = record(second, at + timedelta(seconds=30))

    assert two.replaces == one.response_id
    with engine.connect() as connection:
        responses = {r.id: (r.replaces, r.source) for r in connection.execute(select(Response))}
        payloads = connection.execute(select(OutboxEntry.payload).order_by(OutboxEntry.id))
        payloads = payloads.scalars().all()
    assert responses == {
        one.response_id: (None, SOURCE),
        two.response_id: (one.response_id, SOURCE),
    }
    expected = [
        services.build_event(first, one.response_id, at, source=SOURCE),
        services.build_event(
            second, two.response_id, at + timedelta(seconds=30), one.response_id, SOURCE
        ),
    ]
    assert payloads == [events.encode(e).decode("utf-8") for e in expected]


def test_over_budget_a_refused_token_and_a_retry_leave_everything_as_it_was(record, engine):
    at = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    token = str(uuid.uuid4())
    first = record(submission(token), at)
    record(submission(), at + timedelta(seconds=1))
    before = everything(engine)

    with pytest.raises(budgets.OverBudget) as over:
        record(submission(), at + timedelta(seconds=2))
    assert over.value.scope.name == "one_page"
    # The budget started with the first answer and lasts an hour.
    assert over.value.retry_after_s == 3598
    # The retry is answered with its response even over the budget, and spends nothing.
    assert record(submission(token), at + timedelta(seconds=3)) == (first.response_id, None)
    with pytest.raises(services.Refused) as late:
        record(submission(token, clarity="no"), at + timedelta(minutes=31))
    assert (late.value.field, late.value.status) == ("client_token", 409)
    assert everything(engine) == before

    # The form path has budgets of its own (here 1 an hour on a page).
    record(submission(), at + timedelta(seconds=4), form=True)
    with pytest.raises(budgets.OverBudget) as form_over:
        record(submission(), at + timedelta(seconds=5), form=True)
    assert form_over.value.scope.name == "form_one_page"

    # An hour after the first answer the page's budget starts again from one.
    assert record(submission(), at + timedelta(hours=1, seconds=1)).replaces is None
