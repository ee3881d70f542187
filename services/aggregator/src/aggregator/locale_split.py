"""A page's figures split by the language the widget asked in ("is this page clear to
people reading it in Portuguese?"): daily_locale_counts and daily_locale_responses,
kept by ingest.py beside daily_counts, summed per window like stats.py's.

Only answers given since migration 0010 carry a language, so the locales of a page
may add up to fewer than its whole n.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregator.models import DailyLocaleCount, DailyLocaleResponse
from aggregator.scoring import WINDOWS, Tally
from aggregator.stats import figures_json, window_sum
from koe_directory import ANSWERS
from koe_directory.catalogue import LOCALES

# locale -> window name -> figures_json (n, score, questions)
LocaleFigures = dict[str, dict[str, dict]]


def page_locales(session: Session, page_id: str, as_of: date) -> LocaleFigures:
    """Per locale with answers, in the catalogue's order: each window's figures."""
    tallies: dict[str, dict[str, dict[str, Tally]]] = {}
    columns = [
        window_sum(DailyLocaleCount.day, getattr(DailyLocaleCount, answer), as_of, length).label(
            f"{name}_{answer}"
        )
        for name, length in WINDOWS.items()
        for answer in ANSWERS
    ]
    rows = session.execute(
        select(DailyLocaleCount.locale, DailyLocaleCount.question, *columns)
        .where(DailyLocaleCount.page_id == page_id, DailyLocaleCount.day <= as_of)
        .group_by(DailyLocaleCount.locale, DailyLocaleCount.question)
    )
    for row in rows:
        for name in WINDOWS:
            counts = (int(getattr(row, f"{name}_{answer}")) for answer in ANSWERS)
            tallies.setdefault(row.locale, {}).setdefault(name, {})[row.question] = Tally(*counts)
    responses = [
        window_sum(DailyLocaleResponse.day, DailyLocaleResponse.responses, as_of, length).label(
            name
        )
        for name, length in WINDOWS.items()
    ]
    totals = {
        row.locale: {name: int(getattr(row, name)) for name in WINDOWS}
        for row in session.execute(
            select(DailyLocaleResponse.locale, *responses)
            .where(DailyLocaleResponse.page_id == page_id, DailyLocaleResponse.day <= as_of)
            .group_by(DailyLocaleResponse.locale)
        )
    }
    order = {locale: i for i, locale in enumerate(LOCALES)}
    return {
        locale: {
            name: figures_json(tallies[locale].get(name, {}), totals.get(locale, {}).get(name, 0))
            for name in WINDOWS
        }
        for locale in sorted(tallies, key=lambda locale: order.get(locale, len(order)))
    }
