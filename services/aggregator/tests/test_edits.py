"""Did my edit help? (edits/): the verdict on numbers, how an edit gets recorded (five
sources or the city's page list, never one client), and the four-week report written
exactly once to the alert outbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from aggregator.accounts.services import create_account
from aggregator.alerts.models import AlertOutbox
from aggregator.counting.ingest import handle_batch
from aggregator.edits import reports, verdict
from aggregator.edits.models import PageEdit
from aggregator.pages.listing import import_pages
from aggregator.pages.models import Page
from aggregator.stats.scoring import Tally
from koe_contract import EDIT_REVIEWED
from koe_directory import load_directory
from koe_directory.page_list import ListedPage
from koe_kit import events
from koe_kit.db import transaction

TOKYO = ZoneInfo("Asia/Tokyo")
DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")
PAGE = "u-5f1c9a2d7e3b4c60"
PAGE_URL = "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html"
OLD, NEW = "2026-04-01", "2026-10-05"
EDIT = date.fromisoformat(NEW)
API_TOKEN = "dashboard-api-token-" + "t" * 16  # noqa: S105 (conftest's test token)


# -- the verdict ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "outcome"),
    [
        (Tally(10, 5, 25), Tally(30, 5, 5), "better"),
        (Tally(30, 5, 5), Tally(10, 5, 25), "worse"),
        (Tally(20, 10, 10), Tally(22, 9, 9), "unclear"),
        # A big change on few answers: no verdict, whatever it looks like.
        (Tally(0, 0, 9), Tally(9, 0, 0), "too_few"),
        (Tally(20, 10, 10), Tally(), "too_few"),
        # Real (the interval excludes 0) but under MIN_POINTS on a very busy page.
        (Tally(4000, 1000, 5000), Tally(4300, 1000, 4700), "unclear"),
    ],
)
def test_the_verdict_says_one_of_four_things(before, after, outcome):
    assert verdict.compare("clarity", before, after).outcome == outcome


def test_the_change_s_interval_uses_the_answers_own_spread():
    # All neutral on both sides: answers of ½ with no spread, so the change is
    # certain; a binomial interval would call it as wide as a 50/50 page's.
    compared = verdict.compare("clarity", Tally(0, 40, 0), Tally(0, 40, 0))
    assert compared.change == 0
    assert compared.high - compared.low < 25
    assert compared.before_interval == compared.after_interval


CLEARLY_BETTER = (Tally(10, 5, 25), Tally(30, 5, 5))
CLEARLY_WORSE = (Tally(30, 5, 5), Tally(10, 5, 25))
NO_CHANGE = (Tally(20, 10, 10), Tally(22, 9, 9))
FEW = (Tally(0, 0, 9), Tally(9, 0, 0))
# 50 → 72.5 points on 40 answers a side: z ≈ 2.1, clear at 95 % for the question alone,
# not at the family's level over three questions (z ≈ 2.39).
BETTER_ALONE = (Tally(20, 0, 20), Tally(29, 0, 11))


@pytest.mark.parametrize(
    ("sides", "overall"),
    [
        ([CLEARLY_BETTER, NO_CHANGE, FEW], "better"),
        ([CLEARLY_WORSE, CLEARLY_WORSE, NO_CHANGE], "worse"),
        ([CLEARLY_BETTER, CLEARLY_WORSE, NO_CHANGE], "unclear"),
        ([NO_CHANGE, FEW, FEW], "unclear"),
        ([FEW, FEW, FEW], "too_few"),
        # One of three questions clear only on its own: the page's word waits.
        ([BETTER_ALONE, NO_CHANGE, NO_CHANGE], "unclear"),
        ([BETTER_ALONE, CLEARLY_BETTER, NO_CHANGE], "better"),
    ],
)
def test_the_page_s_word_follows_the_questions_that_moved_clearly(sides, overall):
    compared = [verdict.compare(q, *side) for q, side in zip(("a", "b", "c"), sides, strict=True)]
    assert verdict.overall(compared) == overall


def test_a_question_clear_alone_is_still_shown_as_moved():
    # The per-question verdict keeps its own 95 % look; only the page's word is stricter.
    compared = verdict.compare("clarity", *BETTER_ALONE)
    assert compared.outcome == "better"
    assert compared.clear_at(verdict.family_z(1))
    assert not compared.clear_at(verdict.family_z(3))


def test_the_family_s_z_grows_with_the_questions():
    assert verdict.family_z(1) == pytest.approx(1.96, abs=0.01)
    assert verdict.family_z(3) == pytest.approx(2.394, abs=0.01)
    assert verdict.family_z(3) < verdict.family_z(5)


def test_the_windows_leave_the_edit_s_own_day_out():
    assert verdict.before_window(EDIT).end == EDIT - timedelta(days=1)
    assert verdict.after_window(EDIT).start == EDIT + timedelta(days=1)
    assert verdict.after_window(EDIT).end - verdict.after_window(EDIT).start == timedelta(27)
    assert verdict.report_day(EDIT) == verdict.after_window(EDIT).end + timedelta(days=1)


# -- recording edits ------------------------------------------------------------------------


def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12), TOKYO).astimezone(UTC)


def _answers(make_feedback, make_source, day: date, modified: str, senders, value="yes"):
    return [
        make_feedback(
            _noon(day) + timedelta(minutes=i),
            {"clarity": value},
            source=make_source(f"{sender} {day}"),
            page_modified=modified,
        )
        for i, sender in enumerate(senders)
    ]


def _count(sessions, batch, now: datetime | None = None):
    with transaction(sessions) as session:
        handle_batch(session, batch, timezone=TOKYO, directory=DIRECTORY, now=now)


def _state(sessions) -> tuple[date | None, list[tuple[date, date, str]]]:
    with transaction(sessions) as session:
        modified = session.scalar(select(Page.modified).where(Page.id == PAGE))
        edits = [
            (e.day, e.previous, e.confirmed_by)
            for e in session.scalars(select(PageEdit).order_by(PageEdit.day))
        ]
    return modified, edits


def test_five_sources_make_an_edit_one_client_cannot(sessions, make_feedback, make_source):
    day = EDIT + timedelta(days=1)
    # Five people saw the old date: where koe starts, not an edit.
    _count(sessions, _answers(make_feedback, make_source, day, OLD, "abcde"))
    assert _state(sessions) == (date.fromisoformat(OLD), [])
    # One client says NEW ten times (one vote a day), three others agree: four votes.
    one = _answers(make_feedback, make_source, day, NEW, ["mallory"] * 10)
    _count(sessions, one + _answers(make_feedback, make_source, day, NEW, "fgh"))
    assert _state(sessions)[1] == []
    # A date after the answer's own day is nobody's vote (a page read before it changed).
    tomorrow = (day + timedelta(days=1)).isoformat()
    _count(sessions, _answers(make_feedback, make_source, day, tomorrow, "jklmnopq"))
    assert _state(sessions)[1] == []
    # The fifth source: the edit, dated by the page's new date.
    _count(sessions, _answers(make_feedback, make_source, day, NEW, "r"))
    assert _state(sessions) == (EDIT, [(EDIT, date.fromisoformat(OLD), "sources")])
    # An earlier date confirmed later (a stale cache) moves nothing back.
    _count(sessions, _answers(make_feedback, make_source, day, "2026-06-01", "stuvw"))
    assert _state(sessions) == (EDIT, [(EDIT, date.fromisoformat(OLD), "sources")])


def test_the_city_s_page_list_dates_edits_and_then_answers_do_not(
    sessions, make_feedback, make_source
):
    now = datetime.now(UTC)
    listed = ListedPage(PAGE_URL, PAGE, modified=date.fromisoformat(OLD))
    with transaction(sessions) as session:
        assert import_pages(session, [listed], now).edits == 0  # where koe starts
    with transaction(sessions) as session:
        again = ListedPage(PAGE_URL, PAGE, modified=EDIT)
        assert import_pages(session, [again], now).edits == 1
        assert import_pages(session, [again], now).edits == 0  # the same list again
    assert _state(sessions) == (EDIT, [(EDIT, date.fromisoformat(OLD), "list")])
    day = EDIT + timedelta(days=3)
    _count(sessions, _answers(make_feedback, make_source, day, day.isoformat(), "abcdef"))
    assert _state(sessions) == (EDIT, [(EDIT, date.fromisoformat(OLD), "list")])


# -- the four-week report ------------------------------------------------------------------------


def _history(make_feedback, make_source):
    """Bad clarity for four weeks at OLD, the edit, good clarity for four weeks at NEW."""
    produced = []
    for back in range(28, 0, -1):
        day = EDIT - timedelta(days=back)
        produced += _answers(make_feedback, make_source, day, OLD, "ab", "no")
        produced += _answers(make_feedback, make_source, day, OLD, "c", "neutral")
    for ahead in range(1, 29):
        day = EDIT + timedelta(days=ahead)
        produced += _answers(make_feedback, make_source, day, NEW, "abc", "yes")
    return produced


def _reports(sessions) -> list[AlertOutbox]:
    with transaction(sessions) as session:
        rows = session.scalars(select(AlertOutbox).where(AlertOutbox.edit_report)).all()
        session.expunge_all()
    return list(rows)


def _report(sessions, now: datetime) -> int:
    with transaction(sessions) as session:
        return reports.write_due(
            session, now=now, timezone=TOKYO, max_age_days=3, directory=DIRECTORY
        )


def test_four_weeks_after_an_edit_one_report_is_written(sessions, make_feedback, make_source):
    history = _history(make_feedback, make_source)
    report_day = verdict.report_day(EDIT)
    _count(sessions, history)
    assert _report(sessions, _noon(report_day - timedelta(days=1))) == 0
    assert _reports(sessions) == []  # the four weeks are not over

    on_time = _noon(report_day)
    assert _report(sessions, on_time) == 1
    [row] = _reports(sessions)
    event = events.decode(row.payload.encode())  # valid against its schema
    assert event["type"] == EDIT_REVIEWED and event["id"] == row.alert_id
    data = event["data"]
    assert data["outcome"] == "better"
    assert data["edit"] == {"day": NEW, "previous": OLD, "confirmed_by": "sources"}
    clarity = next(q for q in data["questions"] if q["question"] == "clarity")
    assert (clarity["before"]["n"], clarity["after"]["n"]) == (84, 84)
    assert clarity["before"]["score"] == pytest.approx(100 / 6, abs=0.1)
    assert clarity["after"]["score"] == 100.0
    assert row.sent_at is None  # for the publisher to send

    # Later looks, a restart, a redelivered history: never a second one.
    _count(sessions, history)
    assert _report(sessions, on_time + timedelta(hours=1)) == 0
    assert len(_reports(sessions)) == 1


def test_a_report_long_overdue_is_recorded_not_sent(sessions, make_feedback, make_source):
    # A replay of an old topic into a new database: the numbers are kept, nobody emailed.
    _count(sessions, _history(make_feedback, make_source))
    assert _report(sessions, _noon(verdict.report_day(EDIT) + timedelta(days=30))) == 0
    [row] = _reports(sessions)
    assert row.sent_at is not None
    assert json.loads(row.payload)["data"]["outcome"] == "better"


def test_no_alerts_list_shows_a_report(dashboard_app_for, sessions, make_feedback, make_source):
    app = dashboard_app_for()
    _count(sessions, _history(make_feedback, make_source))
    assert _report(sessions, _noon(verdict.report_day(EDIT))) == 1
    clerk = _clerk(app, sessions)
    assert "アラートはありません。" in clerk.get("/alerts").get_data(as_text=True)
    assert "アラートはありません。" in clerk.get(f"/pages/{PAGE}").get_data(as_text=True)


# -- the page's view ------------------------------------------------------------------------

PASSWORD = "correct horse battery"  # noqa: S105 (a test account's)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _clerk(app, sessions) -> object:
    with transaction(sessions) as session:
        create_account(
            session, DIRECTORY, email="clerk@somu.example", password=PASSWORD, division="somu-dx"
        )
    client = app.test_client()
    token = CSRF.search(client.get("/sign-in").get_data(as_text=True)).group(1)
    data = {"email": "clerk@somu.example", "password": PASSWORD, "csrf_token": token}
    assert client.post("/sign-in", data=data).status_code == 303
    return client


def test_the_page_s_view_marks_its_edits_and_compares_before_and_after(
    dashboard_app_for, sessions, make_feedback, make_source
):
    app = dashboard_app_for()
    today = datetime.now(TOKYO).date()
    first, second = today - timedelta(days=40), today - timedelta(days=10)
    produced = _answers(make_feedback, make_source, today - timedelta(days=70), OLD, "abcde")
    for back in range(68, 0, -1):
        day = today - timedelta(days=back)
        modified = OLD if day < first else first.isoformat() if day < second else second.isoformat()
        value = "no" if day < first else "yes"
        produced += _answers(make_feedback, make_source, day, modified, "abcde", value)
    _count(sessions, produced, now=_noon(today))
    clerk = _clerk(app, sessions)

    html = clerk.get(f"/pages/{PAGE}").get_data(as_text=True)

    # The daily chart (28 days) holds the second edit only; each question's chart marks it.
    assert html.count(f'<g class="edit-mark" data-day="{second.isoformat()}">') == 3
    assert f'data-day="{first.isoformat()}">' not in html.split('id="edits"')[0]
    # The charts' tables (for screen readers) say which day carries the edit.
    day_row = re.findall(r'<tr><th scope="row">([^<]*) <span class="edit-day">', html)
    assert len(day_row) == 3 and day_row[0] == f"{second.year}年{second.month}月{second.day}日"
    weekly = clerk.get(f"/pages/{PAGE}?period=weekly").get_data(as_text=True)
    assert weekly.count('<g class="edit-mark"') == 6  # both, on 12 weeks
    # Newest first: the second edit is still in its four weeks, the first is judged.
    sections = re.findall(r'<section class="edit" data-day="([\d-]+)"', html)
    assert sections == [second.isoformat(), first.isoformat()]
    judged = html.split(f'<section class="edit" data-day="{first.isoformat()}"')[1]
    assert '<p class="verdict" data-outcome="better"><strong>良くなりました</strong>' in judged
    row = re.search(r'<tr data-question="clarity" data-outcome="better">(.*?)</tr>', judged, re.S)
    assert '0.0 <span class="n">(n=140)</span>' in row.group(1)  # 28 days × 5 noes
    assert '100.0 <span class="n">(n=140)</span>' in row.group(1)
    assert "+100.0" in row.group(1)
    pending = html.split(f'<section class="edit" data-day="{second.isoformat()}"')[1]
    pending = pending.split('<section class="edit"')[0]
    assert 'data-outcome="pending"' in pending and "途中経過" in pending
    english = clerk.get(f"/pages/{PAGE}?lang=en").get_data(as_text=True)
    assert "Better" in english and "Did the edit help?" in english


def test_the_stats_api_gives_a_page_s_edits_judged_as_of_the_day_asked(
    dashboard_app_for, sessions, make_feedback, make_source
):
    app = dashboard_app_for()
    _count(sessions, _history(make_feedback, make_source))
    api = app.test_client()
    token = {"Authorization": f"Bearer {API_TOKEN}"}

    def edits(as_of: date) -> list[dict]:
        answer = api.get(f"/api/v1/pages/{PAGE}?as_of={as_of.isoformat()}", headers=token)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["edits"]

    last_day = verdict.after_window(EDIT).end
    # A day before the four weeks end: the answers up to it (3 a day), no verdict.
    [pending] = edits(last_day - timedelta(days=1))
    assert pending["day"] == NEW and pending["report_day"] == (last_day + timedelta(1)).isoformat()
    assert pending["outcome"] is None  # the figures so far, no verdict yet
    assert {q["question"]: q["after"]["n"] for q in pending["questions"]}["clarity"] == 81
    assert {q["outcome"] for q in pending["questions"]} == {None}
    [judged] = edits(last_day + timedelta(days=1))
    assert judged["outcome"] == "better"
    clarity = next(q for q in judged["questions"] if q["question"] == "clarity")
    assert clarity["outcome"] == "better" and clarity["after"]["n"] == 84
    assert clarity["change"]["points"] == pytest.approx(100 - 100 / 6, abs=0.1)
    assert edits(EDIT - timedelta(days=400)) == []  # before the edit, none to show
