"""Series for the dashboard's charts, scored exactly as the stats API scores.

- `weekly_page_scores`: a page's score per week for the list's sparklines, all
  visible pages in one grouped query (12 weeks × 3 questions rows per page at
  most, never one row per day).
- `question_series`: a page's daily or weekly points per question with the 95%
  Wilson interval, built from the stats API's own daily series.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from aggregator.counting.models import DailyCount, DailyLocaleCount
from aggregator.stats.scoring import (
    Tally,
    page_score,
    question_score,
    rounded,
    wilson_interval,
)
from koe_directory import QUESTION_KEYS
from koe_kit.db import keyed_range, table_of

SPARKLINE_WEEKS = 12
DAILY_DAYS = 28
WEEKLY_WEEKS = 12
PERIODS = ("daily", "weekly")


def week_starts(as_of: date, weeks: int) -> list[date]:
    """The first days of the `weeks` 7-day spans ending at as_of, oldest first."""
    return [as_of - timedelta(days=7 * (weeks - k) - 1) for k in range(weeks)]


def weekly_page_scores(
    session: Session,
    page_ids: Collection[str],
    as_of: date,
    weeks: int = SPARKLINE_WEEKS,
    locale: str | None = None,
) -> dict[str, list[float | None]]:
    """page id → its score per 7-day span, oldest first (None: nobody answered); with a
    `locale`, of the answers given in that language only."""
    if not page_ids:
        return {}
    daily = DailyCount if locale is None else DailyLocaleCount
    starts = week_starts(as_of, weeks)
    # The shown pages' rows only, each page's found by its (page_id, day) key: a cost
    # that does not grow with the city's pages (issue 13).
    keyed = keyed_range(
        session, table_of(daily), daily.page_id, daily.day, list(page_ids), starts[0], as_of
    )
    counts = keyed.c
    # Newest span first, so the first start the day is on or after is its span.
    bucket = case(
        *((counts.day >= start, index) for index, start in reversed(list(enumerate(starts)))),
        else_=-1,
    ).label("bucket")
    query = select(
        counts.page_id,
        counts.question,
        bucket,
        func.sum(counts.yes),
        func.sum(counts.neutral),
        func.sum(counts.no),
    ).group_by(counts.page_id, counts.question, bucket)
    if locale is not None:
        query = query.where(counts.locale == locale)
    tallies: dict[str, list[dict[str, Tally]]] = {}
    for page_id, question, index, yes, neutral, no in session.execute(query):
        per_week = tallies.get(page_id)
        if per_week is None:  # (not setdefault: it would build the 12 weeks for each row)
            per_week = tallies[page_id] = [{} for _ in starts]
        per_week[index][question] = Tally(int(yes), int(neutral), int(no))
    return {
        page_id: [rounded(page_score(week.values())) for week in per_week]
        for page_id, per_week in tallies.items()
    }


@dataclass(frozen=True)
class Point:
    start: date  # the day, or the first day of the week
    n: int
    score: float | None
    low: float | None
    high: float | None


def _point(start: date, tally: Tally) -> Point:
    interval = wilson_interval(tally)
    return Point(
        start=start,
        n=tally.n,
        score=rounded(question_score(tally)),
        low=rounded(interval[0]) if interval else None,
        high=rounded(interval[1]) if interval else None,
    )


def question_series(daily: list[dict], period: str) -> dict[str, list[Point]]:
    """question → points, from `stats.page_detail(...)["daily"]` (oldest day first).

    Daily: the last DAILY_DAYS days. Weekly: the days summed per 7-day span ending
    at the last day, so the newest week is always complete up to as_of.
    """
    days = [(date.fromisoformat(d["day"]), d["questions"]) for d in daily]
    series: dict[str, list[Point]] = {q: [] for q in QUESTION_KEYS}
    if period == "daily":
        for day, questions in days[-DAILY_DAYS:]:
            for q in QUESTION_KEYS:
                series[q].append(_point(day, _tally(questions[q])))
        return series
    for start in range(len(days) % 7, len(days), 7):
        week = days[start : start + 7]
        for q in QUESTION_KEYS:
            total = Tally()
            for _day, questions in week:
                total = total + _tally(questions[q])
            series[q].append(_point(week[0][0], total))
    return series


def _tally(figures: dict) -> Tally:
    return Tally(figures["yes"], figures["neutral"], figures["no"])


def series_days(period: str) -> int:
    """How many days of the stats API's daily series a period needs."""
    return DAILY_DAYS if period == "daily" else 7 * WEEKLY_WEEKS
