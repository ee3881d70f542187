"""The pages list's sparklines (trends.weekly_page_scores) read only the shown pages'
rows, through their key, and show what summing every daily row by week gives."""

from __future__ import annotations

import random
from datetime import date, timedelta

from sqlalchemy import select

from aggregator.counting.models import DailyCount, DailyLocaleCount
from aggregator.stats import trends
from aggregator.stats.scoring import Tally, page_score, rounded
from koe_directory import QUESTION_KEYS
from koe_kit.db import transaction

AS_OF = date(2026, 11, 27)
PAGES = [f"u-{index:016x}" for index in range(8)]
SHOWN = PAGES[1:6]


def fill(sessions) -> None:
    """Random daily rows of every page, in two languages, from before the sparklines'
    12 weeks to after as_of (a clock ahead), so the range's ends are tested too."""
    rng = random.Random(13)
    with transaction(sessions) as session:
        for page_id in PAGES:
            for back in range(-3, 100):
                if rng.random() < 0.6:
                    continue
                day = AS_OF - timedelta(days=back)
                for q in rng.sample(QUESTION_KEYS, rng.randint(1, 3)):
                    figures = {a: rng.randrange(4) for a in ("yes", "neutral", "no")}
                    locale = rng.choice(["ja", "en"])
                    session.add(DailyCount(page_id=page_id, day=day, question=q, **figures))
                    session.add(
                        DailyLocaleCount(
                            page_id=page_id, day=day, locale=locale, question=q, **figures
                        )
                    )


def summed_by_week(session, locale: str | None) -> dict[str, list[float | None]]:
    """Every page's weekly scores, summed here from all daily rows."""
    starts = trends.week_starts(AS_OF, trends.SPARKLINE_WEEKS)
    table = DailyCount if locale is None else DailyLocaleCount
    query = select(table)
    if locale is not None:
        query = query.where(DailyLocaleCount.locale == locale)
    weeks: dict[str, list[dict[str, Tally]]] = {}
    for row in session.scalars(query):
        if not starts[0] <= row.day <= AS_OF:
            continue
        index = max(k for k, start in enumerate(starts) if row.day >= start)
        week = weeks.setdefault(row.page_id, [{} for _ in starts])[index]
        week[row.question] = week.get(row.question, Tally()) + Tally(row.yes, row.neutral, row.no)
    return {
        page_id: [rounded(page_score(week.values())) for week in per_week]
        for page_id, per_week in weeks.items()
    }


def test_sparklines_show_the_shown_pages_weekly_sums(sessions):
    fill(sessions)
    with sessions() as session:
        for locale in (None, "en"):
            expected = summed_by_week(session, locale)
            shown = trends.weekly_page_scores(session, SHOWN, AS_OF, locale=locale)
            # The shown pages, each as the daily rows give it; no other page.
            assert shown == {page_id: expected[page_id] for page_id in SHOWN}
            # Not a comparison of empty weeks: every shown page has scores, and rows
            # outside the 12 weeks exist (the fill reaches past both ends).
            assert all(any(v is not None for v in shown[page_id]) for page_id in SHOWN)
            assert set(expected) == set(PAGES)
