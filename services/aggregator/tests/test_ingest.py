"""The batch handler on SQLite and PostgreSQL: exactly-once counts, days, pages, alerts."""

from __future__ import annotations

import functools
import json
import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from aggregator.alerting import daily_tallies
from aggregator.drop_rule import DropRule, evaluate
from aggregator.ingest import handle_batch
from aggregator.models import (
    AlertOutbox,
    AlertState,
    DailyCount,
    DailyResponse,
    Page,
    ProcessedEvent,
)
from koe_directory import load_directory
from koe_kit import events
from koe_kit.db import transaction

DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")

TOKYO = ZoneInfo("Asia/Tokyo")
PAGE_URL = "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html"  # make_feedback's
# The logic on small histories: the stricter shipped minimums are judged in docs/alerts.md.
RULE = DropRule(min_n_recent=10, min_n_baseline=20, alpha=0.05)


def run(sessions, batch):
    with transaction(sessions) as session:
        return handle_batch(session, batch, timezone=TOKYO, rule=RULE, directory=DIRECTORY)


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


def drop_history(feedback, start: date, good_days: int = 28, bad_days: int = 7) -> list[dict]:
    """Two good answers a day for four weeks, then two bad ones a day for a week."""
    batch = []
    for offset in range(good_days + bad_days):
        day = start + timedelta(days=offset)
        answer = "yes" if offset < good_days else "no"
        for hour in (1, 5):
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
    history = drop_history(feedback, date(2026, 10, 20))
    good, bad = history[:56], history[56:]
    assert run(sessions, good).alerts == []
    result = run(sessions, bad)
    assert [a.page_id for a in result.alerts] == ["u-5f1c9a2d7e3b4c60"]
    # Replays and more bad answers the next day: the id repeats or the cooldown holds.
    run(sessions, bad)
    run(sessions, history)
    run(sessions, [feedback("2026-11-24T03:00:00Z", {"clarity": "no"}) for _ in range(5)])

    rows = outbox(sessions)
    assert len(rows) == 1
    alert = json.loads(rows[0].payload)
    events.validate(alert)
    assert alert["id"] == alert["data"]["alert_id"] == result.alerts[0].alert_id
    assert alert["subject"] == "u-5f1c9a2d7e3b4c60"
    data = alert["data"]
    assert data["page"]["title"] == "津市の自治体DX取組状況"
    assert data["recent"] == {"start": "2026-11-17", "end": "2026-11-23"}
    assert data["baseline"] == {"start": "2026-10-20", "end": "2026-11-16"}
    [clarity] = data["questions"]
    assert clarity["question"] == "clarity"
    assert clarity["recent"] == {
        "yes": 0,
        "neutral": 0,
        "no": 14,
        "n": 14,
        "score": 0.0,
        "interval": {"low": 0.0, "high": 21.5},  # Wilson, 95%
    }
    assert clarity["baseline"] == {
        "yes": 56,
        "neutral": 0,
        "no": 0,
        "n": 56,
        "score": 100.0,
        "interval": {"low": 93.6, "high": 100.0},
    }
    assert clarity["drop_points"] == 100.0
    assert rows[0].sent_at is None
    with sessions() as session:
        state = session.scalars(select(AlertState)).one()
        assert (state.question, state.last_alert_day) == ("clarity", date(2026, 11, 23))
        assert state.last_alert_id == alert["id"]


def test_a_replayed_old_drop_stays_quiet(sessions, make_feedback):
    """Rebuilding the stats from an old topic must not email last month's drops."""
    history = drop_history(make_feedback, date(2026, 10, 20))  # recent window ends 11-23
    aged = replace(RULE, max_age_days=3)
    with transaction(sessions) as session:
        today_plus_10 = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
        result = handle_batch(
            session, history, timezone=TOKYO, rule=aged, directory=DIRECTORY, now=today_plus_10
        )
    assert result.counted == len(history)
    assert result.alerts == []
    assert outbox(sessions) == []
    # The same drop on another page, seen within three days of its window, fires.
    other = drop_history(functools.partial(make_feedback, page_id="other"), date(2026, 10, 20))
    with transaction(sessions) as session:
        on_time = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
        live = handle_batch(
            session, other, timezone=TOKYO, rule=aged, directory=DIRECTORY, now=on_time
        )
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


def test_alerts_match_the_rule_over_the_raw_daily_rows(sessions, make_feedback):
    """The windows summed in SQL give exactly the alerts of `evaluate` over every daily row.

    Pages of one batch end on different days (one grouped query per as_of), their
    history reaches past the baseline, and a later batch brings an older day than
    rows already counted, which must stay outside its windows.
    """
    feedback = make_feedback
    rng = random.Random(7)
    start = date(2026, 9, 1)
    last_days = {f"p{k}": 45 + k % 4 for k in range(12)}
    batch = []
    for k, (page_id, last) in enumerate(last_days.items()):
        for offset in range(last + 1):
            # Later days get worse, more so for higher k: some pages drop, some do not.
            p_yes = 0.9 - (0.07 * k if offset > last - 7 else 0.0)
            for hour in (1, 4, 7):
                answers = {
                    q: "yes" if rng.random() < p_yes else rng.choice(("neutral", "no"))
                    for q in ("findability", "clarity", "usefulness")
                }
                when = f"{(start + timedelta(days=offset)).isoformat()}T0{hour}:00:00Z"
                batch.append(feedback(when, answers, page_id=page_id))
    rng.shuffle(batch)

    def expected(as_of: dict[str, date], cooldown: dict[str, dict[str, date]]) -> list:
        with sessions() as session:
            # The raw daily rows, judged by `evaluate`: the oracle for the grouped query.
            daily = daily_tallies(session, list(as_of), start, max(as_of.values()))
        alerts = [
            evaluate(page_id, daily[page_id], day, RULE, cooldown.get(page_id))
            for page_id, day in as_of.items()
        ]
        return sorted((a for a in alerts if a), key=lambda a: a.page_id)

    def by_page(alerts: list) -> list:
        return sorted(alerts, key=lambda a: a.page_id)

    first = run(sessions, batch)
    as_of = {p: start + timedelta(days=last) for p, last in last_days.items()}
    assert by_page(first.alerts) == expected(as_of, {})
    assert len(first.alerts) >= 3

    with sessions() as session:
        cooldown: dict[str, dict[str, date]] = {}
        for state in session.scalars(select(AlertState)):
            cooldown.setdefault(state.page_id, {})[state.question] = state.last_alert_day
    earlier = {p: day - timedelta(days=9) for p, day in as_of.items()}
    late = [
        feedback(f"{day.isoformat()}T09:00:00Z", {"clarity": "no"}, page_id=p)
        for p, day in earlier.items()
    ]
    second = run(sessions, late)
    assert by_page(second.alerts) == expected(earlier, cooldown)
