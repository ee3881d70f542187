"""The batch handler on SQLite and PostgreSQL: exactly-once counts, days, pages, alerts."""

from __future__ import annotations

import functools
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from aggregator.alerts.models import AlertOutbox, DetectorState
from aggregator.counting.ingest import handle_batch
from aggregator.counting.models import DailyCount, DailyResponse, ProcessedEvent
from aggregator.pages.models import Page
from koe_directory import load_directory
from koe_kit import events
from koe_kit.db import transaction

DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")

TOKYO = ZoneInfo("Asia/Tokyo")
PAGE_URL = "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html"  # make_feedback's
# drop_history's days: 100 good ones from START, four bad ones, and an answer on the
# fifth, which completes the fourth; judged that evening.
START = date(2026, 8, 1)
FIRST_BAD = START + timedelta(days=100)
EVENING = datetime(2026, 11, 12, 12, 0, tzinfo=UTC)  # the fifth day's, 21:00 in Tokyo


def run(sessions, batch, now: datetime | None = None):
    with transaction(sessions) as session:
        return handle_batch(session, batch, timezone=TOKYO, directory=DIRECTORY, now=now)


def counts(sessions) -> dict[tuple[str, str], tuple[int, int, int]]:
    with sessions() as session:
        rows = session.execute(
            select(
                DailyCount.day,
                DailyCount.question,
                DailyCount.yes,
                DailyCount.neutral,
                DailyCount.no,
            )
        )
        return {(day.isoformat(), q): (y, ne, no) for day, q, y, ne, no in rows}


def responses(sessions) -> dict[tuple[str, str], int]:
    with sessions() as session:
        rows = session.execute(
            select(DailyResponse.page_id, DailyResponse.day, DailyResponse.responses)
        )
        return {(page_id, day.isoformat()): n for page_id, day, n in rows}


def test_each_event_counts_once_through_duplicates_and_replays(sessions, make_feedback):
    feedback = make_feedback
    a = feedback("2026-11-20T03:00:00Z", {"findability": "yes", "clarity": "no"})
    b = feedback("2026-11-20T04:00:00Z", {"findability": "neutral"})
    c = feedback("2026-11-20T05:00:00Z", {"findability": "yes", "usefulness": "yes"})
    first = run(sessions, [a, b, a, c, b])
    assert (first.counted, first.skipped) == (3, 2)
    expected = {
        ("2026-11-20", "findability"): (2, 1, 0),
        ("2026-11-20", "clarity"): (0, 0, 1),
        ("2026-11-20", "usefulness"): (1, 0, 0),
    }
    assert counts(sessions) == expected
    # Three responses with five answers between them.
    assert responses(sessions) == {("u-5f1c9a2d7e3b4c60", "2026-11-20"): 3}
    # The same batch delivered again (crash before the offset commit) changes nothing.
    again = run(sessions, [a, b, a, c, b])
    assert (again.counted, again.skipped) == (0, 5)
    assert responses(sessions) == {("u-5f1c9a2d7e3b4c60", "2026-11-20"): 3}
    d = feedback("2026-11-20T06:00:00Z", {"findability": "no"})
    run(sessions, [c, d])
    expected[("2026-11-20", "findability")] = (2, 1, 1)
    assert counts(sessions) == expected
    assert responses(sessions) == {("u-5f1c9a2d7e3b4c60", "2026-11-20"): 4}
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ProcessedEvent)) == 4


def test_day_is_the_event_time_in_tokyo(sessions, make_feedback):
    feedback = make_feedback
    run(
        sessions,
        [
            feedback("2026-11-20T14:59:59Z", {"clarity": "yes"}),  # 23:59:59 JST, 20th
            feedback("2026-11-20T15:30:00Z", {"clarity": "no"}),  # 00:30 JST, 21st
        ],
    )
    assert counts(sessions) == {
        ("2026-11-20", "clarity"): (1, 0, 0),
        ("2026-11-21", "clarity"): (0, 0, 1),
    }
    assert responses(sessions) == {
        ("u-5f1c9a2d7e3b4c60", "2026-11-20"): 1,
        ("u-5f1c9a2d7e3b4c60", "2026-11-21"): 1,
    }


def test_pages_keep_their_first_url_and_older_events_their_titles(sessions, make_feedback):
    """Events from before sources (none carries one here) are shown and titled as then:
    the latest title wins; but no event moves a page to another URL."""
    feedback = make_feedback
    run(sessions, [feedback("2026-11-20T03:00:00Z", {"clarity": "yes"}, title="古い題名")])
    run(
        sessions,
        [
            feedback("2026-11-21T03:00:00Z", {"clarity": "yes"}, title="新しい題名", division=None),
            feedback("2026-11-21T04:00:00Z", {"clarity": "yes"}, title=None, division=None),
            feedback(
                "2026-11-19T03:00:00Z",
                {"clarity": "yes"},
                title=None,
                url="https://www.info.city.tsu.mie.jp/kurashi/gomi/moved.html",
            ),
        ],
    )
    with sessions() as session:
        page = session.scalars(select(Page)).one()
        assert (page.url, page.title, page.visible) == (PAGE_URL, "新しい題名", True)
        assert page.first_seen.replace(tzinfo=None).date() == date(2026, 11, 19)
        assert page.last_seen.replace(tzinfo=None).date() == date(2026, 11, 21)


def drop_history(feedback, start: date = START, good_days: int = 100) -> list[dict]:
    """Three good answers a day for `good_days` (the detector's reference needs 98 days
    behind the judged day), then three bad ones a day for four days, and one answer on
    the next day (so the fourth is a completed day for the page)."""
    batch = []
    for offset in range(good_days + 5):
        day = start + timedelta(days=offset)
        answer = "yes" if offset < good_days else "no"
        for hour in (1, 3, 5) if offset < good_days + 4 else (1,):
            batch.append(
                feedback(
                    f"{day.isoformat()}T0{hour}:00:00Z", {"clarity": answer, "findability": "yes"}
                )
            )
    return batch


def outbox(sessions) -> list[AlertOutbox]:
    with sessions() as session:
        return list(session.scalars(select(AlertOutbox).order_by(AlertOutbox.id)))


def test_a_drop_lands_in_the_outbox_once(sessions, make_feedback):
    feedback = make_feedback
    history = drop_history(feedback)
    good, bad = history[:300], history[300:]
    assert run(sessions, good, EVENING - timedelta(days=4)).alerts == []
    result = run(sessions, bad, EVENING)
    assert [a.page_id for a in result.alerts] == ["u-5f1c9a2d7e3b4c60"]
    # Replays and more bad answers the next day: the id repeats or the cooldown holds.
    run(sessions, bad, EVENING)
    run(sessions, history, EVENING)
    more = [feedback("2026-11-13T03:00:00Z", {"clarity": "no"}) for _ in range(5)]
    run(sessions, more, EVENING + timedelta(days=1))
    run(sessions, [feedback("2026-11-14T03:00:00Z", {"clarity": "no"})], EVENING + timedelta(2))

    rows = outbox(sessions)
    assert len(rows) == 1
    alert = json.loads(rows[0].payload)
    events.validate(alert)
    assert alert["id"] == alert["data"]["alert_id"] == result.alerts[0].alert_id
    assert alert["subject"] == "u-5f1c9a2d7e3b4c60"
    data = alert["data"]
    assert data["page"]["title"] == "津市の自治体DX取組状況"
    # Judged on a completed bad day after the first (no single day alarms on its own).
    alarm = date.fromisoformat(data["recent"]["end"])
    bad_days = (alarm - FIRST_BAD).days + 1
    assert 2 <= bad_days <= 4
    # The chart's 28 days up to the alarm, against the reference of 84 days ending 14
    # before it.
    assert data["recent"]["start"] == (alarm - timedelta(days=27)).isoformat()
    assert data["baseline"] == {
        "start": (alarm - timedelta(days=97)).isoformat(),
        "end": (alarm - timedelta(days=14)).isoformat(),
    }
    [clarity] = data["questions"]
    assert clarity["question"] == "clarity"
    recent = clarity["recent"]
    assert (recent["yes"], recent["neutral"], recent["no"]) == (
        3 * (28 - bad_days),
        0,
        3 * bad_days,
    )
    assert (clarity["baseline"]["yes"], clarity["baseline"]["n"]) == (252, 252)
    assert clarity["baseline"]["score"] == 100.0
    assert clarity["drop_points"] >= clarity["chart"]["limit_points"] >= 10
    assert rows[0].sent_at is None
    with sessions() as session:
        state = session.get(DetectorState, ("u-5f1c9a2d7e3b4c60", "clarity"))
        assert (state.dropped_day, state.drop_alert_id) == (alarm, alert["id"])


def test_a_replayed_old_drop_stays_quiet(sessions, make_feedback):
    """Rebuilding the stats from an old topic must not email last month's drops."""
    history = drop_history(make_feedback)
    with transaction(sessions) as session:
        ten_days_later = EVENING + timedelta(days=10)
        result = handle_batch(
            session, history, timezone=TOKYO, directory=DIRECTORY, now=ten_days_later
        )
    assert result.counted == len(history)
    assert result.alerts == []
    # Recorded as a live run would have, but never published.
    [row] = outbox(sessions)
    assert row.sent_at is not None
    # The same drop on another page, seen within three days of its judged day, fires.
    other = drop_history(functools.partial(make_feedback, page_id="other"))
    with transaction(sessions) as session:
        live = handle_batch(session, other, timezone=TOKYO, directory=DIRECTORY, now=EVENING)
    assert [a.page_id for a in live.alerts] == ["other"]


def test_many_pages_in_one_batch(sessions, make_feedback):
    feedback = make_feedback
    batch = [
        feedback(f"2026-11-2{i % 5}T03:00:00Z", {"usefulness": "yes"}, page_id=f"p{i % 40}")
        for i in range(1200)
    ]
    assert run(sessions, batch).counted == 1200
    assert run(sessions, batch).counted == 0
    with sessions() as session:
        assert session.scalar(select(func.sum(DailyCount.yes))) == 1200
        assert session.scalar(select(func.sum(DailyResponse.responses))) == 1200
        assert session.scalar(select(func.count()).select_from(DailyResponse)) == 40
        assert session.scalar(select(func.count()).select_from(Page)) == 40
