"""The drop detector in the batch handler, on SQLite and PostgreSQL:
a page's history day by day raises one drop and one recovery, judged on completed days;
a replay of the same events into a new database later records the same alerts and
sends none."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from aggregator.alerts.crowd import DEFAULT_RULE, CrowdRule
from aggregator.alerts.daily_sweep import DailySweep
from aggregator.alerts.detector import DetectorSettings
from aggregator.alerts.models import AlertOutbox, DetectorState
from aggregator.config import load_settings
from aggregator.counting.ingest import handle_batch
from aggregator.migrate import migrate
from koe_directory import load_directory
from koe_kit import events
from koe_kit.config import ConfigError
from koe_kit.db import make_engine, session_factory, transaction

TOKYO = ZoneInfo("Asia/Tokyo")
DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")
DETECTOR = DetectorSettings()
START = date(2026, 3, 2)
GOOD = ["yes", "yes", "yes", "yes", "neutral", "no"]  # 75
BAD = ["yes", "neutral", "no", "no", "no", "no"]  # 25
PAGE = "u-detector-page"
URL = "https://www.info.city.tsu.mie.jp/shisei/dx/detector.html"
# Good for 130 days, bad for 10, good again.
PLAN = [(130, GOOD), (10, BAD), (60, GOOD)]
DROP_DAY = START + timedelta(days=130)


def daily_events(make_feedback) -> dict[date, list[dict]]:
    days: dict[date, list[dict]] = {}
    day = START
    for count, values in PLAN:
        for _ in range(count):
            days[day] = [
                make_feedback(
                    datetime(day.year, day.month, day.day, 1 + i, tzinfo=UTC),
                    {"clarity": value},
                    page_id=PAGE,
                    url=URL,
                    division=None,
                )
                for i, value in enumerate(values)
            ]
            day += timedelta(days=1)
    return days


def run(sessions, batches: list[tuple[list[dict], datetime]], crowd=DEFAULT_RULE) -> None:
    for batch, now in batches:
        with transaction(sessions) as session:
            handle_batch(
                session,
                batch,
                timezone=TOKYO,
                max_age_days=3,
                directory=DIRECTORY,
                detector=DETECTOR,
                crowd=crowd,
                now=now,
            )


def recorded(sessions) -> list[AlertOutbox]:
    with sessions() as session:
        return list(session.scalars(select(AlertOutbox).order_by(AlertOutbox.id)))


def test_a_drop_and_its_recovery_are_judged_on_completed_days_once_each(sessions, make_feedback):
    days = daily_events(make_feedback)
    # One batch a day, in the evening (Tokyo): the day itself is not complete yet.
    run(sessions, [(days[d], datetime(d.year, d.month, d.day, 12, tzinfo=UTC)) for d in days])
    rows = recorded(sessions)
    alerts = [events.decode(r.payload.encode()) for r in rows]
    for alert in alerts:
        events.validate(alert)
    assert [a["type"] for a in alerts] == ["koe.alerts.v1", "koe.alerts.recovered.v1"]
    assert all(r.sent_at is None and r.held_reason is None for r in rows)  # to be emailed
    drop = alerts[0]["data"]
    alarm_day = date.fromisoformat(drop["recent"]["end"])
    assert DROP_DAY < alarm_day <= DROP_DAY + timedelta(days=3)
    # The windows it was judged on: 84 days ending 14 before, and the chart's 28 days.
    assert drop["baseline"] == {
        "start": (alarm_day - timedelta(days=97)).isoformat(),
        "end": (alarm_day - timedelta(days=14)).isoformat(),
    }
    assert drop["recent"]["start"] == (alarm_day - timedelta(days=27)).isoformat()
    [question] = drop["questions"]
    assert question["question"] == "clarity"
    assert question["baseline"]["n"] == 84 * 6 and question["baseline"]["score"] == 75.0
    assert question["drop_points"] >= DETECTOR.min_drop_points
    # The chart it was judged on: its weighted score sat at least the limit below.
    chart = question["chart"]
    assert chart["half_life_days"] == DETECTOR.half_life_days
    assert chart["limit_points"] >= DETECTOR.min_drop_points
    assert chart["effective_n"] >= DETECTOR.min_weight
    below = question["baseline"]["score"] - chart["weighted_score"]
    assert below >= chart["limit_points"] - 0.1  # both rounded to 0.1
    # The event's time is the end of the judged day (Tokyo), not the moment of judging.
    assert events.parse_time(alerts[0]["time"]) == datetime(
        alarm_day.year, alarm_day.month, alarm_day.day, tzinfo=TOKYO
    ) + timedelta(days=1)
    recovery = alerts[1]["data"]
    assert recovery["questions"][0]["drop_alert_id"] == drop["alert_id"]
    assert date.fromisoformat(recovery["as_of"]) >= DROP_DAY + timedelta(days=10 + 7)
    with sessions() as session:
        states = list(session.scalars(select(DetectorState)))
    last = START + timedelta(days=199)
    # Every question judged through the day before the last answer; none open.
    assert {s.last_day for s in states} == {last - timedelta(days=1)}
    assert all(s.dropped_day is None for s in states)


def test_a_replay_into_a_new_database_records_the_same_alerts_and_sends_none(
    sessions, make_feedback, another_database
):
    days = daily_events(make_feedback)
    run(sessions, [(days[d], datetime(d.year, d.month, d.day, 12, tzinfo=UTC)) for d in days])
    live = {r.alert_id: r.payload for r in recorded(sessions)}
    assert len(live) == 2

    # Months later, the whole topic again, in batches of 500 events as the consumer reads it.
    url = another_database("replay")
    migrate(url)
    engine = make_engine(url)
    replay = session_factory(engine)
    stream = [event for d in sorted(days) for event in days[d]]
    later = datetime(2027, 6, 1, tzinfo=UTC)
    run(replay, [(stream[i : i + 500], later) for i in range(0, len(stream), 500)])
    rows = recorded(replay)
    engine.dispose()
    assert {r.alert_id: r.payload for r in rows} == live
    assert all(r.sent_at is not None for r in rows)  # old news: recorded, never published


def test_the_detector_is_the_rule_and_its_knobs_are_checked():
    assert load_settings({}).detector == DetectorSettings()
    assert load_settings({}).alert_max_age_days == 3
    tuned = load_settings({"KOE_DETECTOR_HALF_LIFE_DAYS": "6", "KOE_ALERT_MAX_AGE_DAYS": "5"})
    assert tuned.detector == DetectorSettings(half_life_days=6.0)
    assert tuned.alert_max_age_days == 5
    with pytest.raises(ConfigError) as raised:
        load_settings({"KOE_DETECTOR_LIMIT_SIGMAS": "0.5"})
    assert "KOE_DETECTOR_LIMIT_SIGMAS" in str(raised.value)
    with pytest.raises(ConfigError):
        load_settings({"KOE_DETECTOR_SPAN_DAYS": "3"})


@pytest.mark.parametrize(("down_days", "emailed"), [(5, True), (8, False)])
def test_after_downtime_the_missed_days_are_judged_in_order_and_only_fresh_news_is_sent(
    sessions, make_feedback, down_days, emailed
):
    days = daily_events(make_feedback)
    ordered = sorted(days)
    back = DROP_DAY + timedelta(days=down_days)
    down = [d for d in ordered if DROP_DAY <= d < back]
    evening = [(days[d], datetime(d.year, d.month, d.day, 12, tzinfo=UTC)) for d in ordered]
    before = [b for b, d in zip(evening, ordered, strict=True) if d < DROP_DAY]
    # The consumer was down from the first bad day; it reads the missed days' answers
    # and the day it is back's together, on that evening.
    caught_up = ([e for d in [*down, back] for e in days[d]], evening[ordered.index(back)][1])
    run(sessions, [*before, caught_up])
    [row] = recorded(sessions)
    drop = events.decode(row.payload.encode())["data"]
    alarm_day = date.fromisoformat(drop["recent"]["end"])
    assert alarm_day == DROP_DAY + timedelta(days=3)  # as on the live run: same judgement
    # Within KOE_ALERT_MAX_AGE_DAYS (3) of the day it is judged on it is news and is
    # emailed; older, it is recorded as sent and never published.
    assert (row.sent_at is None) is emailed
    with sessions() as session:
        last_days = {s.last_day for s in session.scalars(select(DetectorState))}
    assert last_days == {back - timedelta(days=1)}  # every missed day judged, not today


def test_a_drop_held_for_review_gets_no_recovery(sessions, make_feedback):
    days = daily_events(make_feedback)
    # A crowd no page has: every alert's evidence is held (crowd.py).
    nobody = CrowdRule(min_sources=1_000_000)
    evening = [(days[d], datetime(d.year, d.month, d.day, 12, tzinfo=UTC)) for d in sorted(days)]
    run(sessions, evening, crowd=nobody)
    [row] = recorded(sessions)
    assert events.decode(row.payload.encode())["type"] == "koe.alerts.v1"
    assert row.held_reason == "few_sources" and row.sent_at is None
    # The page did come back (as in the first test), but its division never heard of
    # the drop: no recovery is recorded, and the question is not left open.
    with sessions() as session:
        assert all(s.dropped_day is None for s in session.scalars(select(DetectorState)))


def test_the_daily_sweep_judges_a_page_that_went_quiet_after_its_drop(sessions, make_feedback):
    """The page's answers stop after its fourth bad day: no later answer completes those
    days, so only the sweep after midnight judges them, once, and emails the drop."""
    days = daily_events(make_feedback)
    quiet_from = DROP_DAY + timedelta(days=4)
    evening = [
        (days[d], datetime(d.year, d.month, d.day, 12, tzinfo=UTC))
        for d in sorted(days)
        if d < quiet_from
    ]
    run(sessions, evening)
    assert recorded(sessions) == []  # the last bad days are not complete for any batch

    daily = DailySweep(
        sessions,
        DETECTOR,
        max_age_days=3,
        timezone=TOKYO,
        directory=DIRECTORY,
        crowd=DEFAULT_RULE,
        grace=timedelta(hours=1),
    )
    midnight = datetime.combine(quiet_from, datetime.min.time(), TOKYO)
    assert daily(midnight + timedelta(minutes=30)) == []  # within the grace: not yet
    [drop] = daily(midnight + timedelta(hours=2))
    assert drop.page_id == PAGE and DROP_DAY < drop.as_of < quiet_from
    assert daily(midnight + timedelta(hours=3)) == []  # once a day
    [row] = recorded(sessions)
    assert row.alert_id == drop.alert_id and row.sent_at is None  # to be emailed
    with sessions() as session:
        assert {s.last_day for s in session.scalars(select(DetectorState))} == {
            quiet_from - timedelta(days=1)
        }
    # Days later, still quiet: each night's sweep judges the new day, and nothing more.
    assert daily(midnight + timedelta(days=1, hours=2)) == []
    assert len(recorded(sessions)) == 1
