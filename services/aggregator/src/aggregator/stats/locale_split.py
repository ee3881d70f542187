"""A page's figures split by the language the widget asked in ("is this page clear to
people reading it in Portuguese?"): daily_locale_counts and daily_locale_responses,
kept by ingest.py beside daily_counts (with the months older days were folded into:
history.py), summed per window like stats/figures.py's.

Only answers given since migration 0010 carry a language, so the locales of a page
may add up to fewer than its whole n.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregator.counting.models import DailyLocaleCount, DailyLocaleResponse
from aggregator.stats.figures import figures_json, window_sum
from aggregator.stats.history import history
from aggregator.stats.scoring import WINDOWS, Tally
from koe_directory import ANSWERS
from koe_directory.catalogue import LOCALES

# locale -> window name -> figures_json (n, score, questions)
LocaleFigures = dict[str, dict[str, dict]]


def page_locales(session: Session, page_id: str, as_of: date) -> LocaleFigures:
    """Per locale with answers, in the catalogue's order: each window's figures."""
    tallies: dict[str, dict[str, dict[str, Tally]]] = {}
    counts, answered = history(DailyLocaleCount).c, history(DailyLocaleResponse).c
    columns = [
        window_sum(counts.day, counts[answer], as_of, length).label(f"{name}_{answer}")
        for name, length in WINDOWS.items()
        for answer in ANSWERS
    ]
    rows = session.execute(
        select(counts.locale, counts.question, *columns)
        .where(counts.page_id == page_id, counts.day <= as_of)
        .group_by(counts.locale, counts.question)
    )
    for row in rows:
        for name in WINDOWS:
            cells = (int(getattr(row, f"{name}_{answer}")) for answer in ANSWERS)
            tallies.setdefault(row.locale, {}).setdefault(name, {})[row.question] = Tally(*cells)
    responses = [
        window_sum(answered.day, answered.responses, as_of, length).label(name)
        for name, length in WINDOWS.items()
    ]
    totals = {
        row.locale: {name: int(getattr(row, name)) for name in WINDOWS}
        for row in session.execute(
            select(answered.locale, *responses)
            .where(answered.page_id == page_id, answered.day <= as_of)
            .group_by(answered.locale)
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
