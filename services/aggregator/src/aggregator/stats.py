"""Read side of the stats API: window and daily figures from daily_counts.

A whole listing costs two queries (the pages, and one grouped query summing
every window at once with CASE), whatever the number of pages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from aggregator.models import DailyCount, Page
from aggregator.scoring import (
    QUESTIONS,
    WINDOWS,
    Tally,
    page_score,
    question_score,
    rounded,
    wilson_interval,
    window_ending,
)

# page id -> window name -> question -> tally
WindowTallies = dict[str, dict[str, dict[str, Tally]]]


def list_pages(session: Session, *, as_of: date, division: str | None = None) -> list[dict]:
    query = select(Page).order_by(Page.id)
    if division is not None:
        query = query.where(Page.division == division)
    pages = list(session.scalars(query))
    tallies = _window_tallies(session, as_of, division=division)
    return [page_json(page, tallies.get(page.id, {}), as_of) for page in pages]


def page_detail(session: Session, page_id: str, *, as_of: date, days: int) -> dict | None:
    page = session.get(Page, page_id)
    if page is None:
        return None
    tallies = _window_tallies(session, as_of, page_id=page_id)
    result = page_json(page, tallies.get(page_id, {}), as_of)
    result["daily"] = _daily_series(session, page_id, as_of, days)
    return result


def _window_tallies(
    session: Session, as_of: date, *, division: str | None = None, page_id: str | None = None
) -> WindowTallies:
    columns = []
    for name, length in WINDOWS.items():
        start = window_ending(as_of, length).start
        for answer in ("yes", "neutral", "no"):
            value = getattr(DailyCount, answer)
            summed = value if start is None else case((DailyCount.day >= start, value), else_=0)
            columns.append(func.coalesce(func.sum(summed), 0).label(f"{name}_{answer}"))
    query = (
        select(DailyCount.page_id, DailyCount.question, *columns)
        .where(DailyCount.day <= as_of)
        .group_by(DailyCount.page_id, DailyCount.question)
    )
    if page_id is not None:
        query = query.where(DailyCount.page_id == page_id)
    if division is not None:
        query = query.where(
            DailyCount.page_id.in_(select(Page.id).where(Page.division == division))
        )
    result: WindowTallies = {}
    for row in session.execute(query):
        per_window = result.setdefault(row.page_id, {})
        for name in WINDOWS:
            per_window.setdefault(name, {})[row.question] = Tally(
                int(getattr(row, f"{name}_yes")),
                int(getattr(row, f"{name}_neutral")),
                int(getattr(row, f"{name}_no")),
            )
    return result


def page_json(page: Page, tallies: Mapping[str, Mapping[str, Tally]], as_of: date) -> dict:
    windows = {}
    for name, length in WINDOWS.items():
        window = window_ending(as_of, length)
        figures = figures_json(tallies.get(name, {}))
        windows[name] = {
            "start": window.start.isoformat() if window.start else None,
            "end": window.end.isoformat(),
            **figures,
        }
    return {
        "id": page.id,
        "url": page.url,
        "title": page.title,
        "division": page.division,
        "as_of": as_of.isoformat(),
        "windows": windows,
    }


def figures_json(per_question: Mapping[str, Tally], *, with_interval: bool = True) -> dict:
    """n and score for the page (n = answers over all its questions) and per question."""
    tallies = [per_question.get(q, Tally()) for q in QUESTIONS]
    return {
        "n": sum(t.n for t in tallies),
        "score": rounded(page_score(tallies)),
        "questions": {
            q: tally_json(t, with_interval=with_interval)
            for q, t in zip(QUESTIONS, tallies, strict=True)
        },
    }


def tally_json(tally: Tally, *, with_interval: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {
        "yes": tally.yes,
        "neutral": tally.neutral,
        "no": tally.no,
        "n": tally.n,
        "score": rounded(question_score(tally)),
    }
    if with_interval:
        interval = wilson_interval(tally)
        result["wilson_low"] = rounded(interval[0]) if interval else None
        result["wilson_high"] = rounded(interval[1]) if interval else None
    return result


def _daily_series(session: Session, page_id: str, as_of: date, days: int) -> list[dict]:
    start = as_of - timedelta(days=days - 1)
    rows = session.execute(
        select(
            DailyCount.day,
            DailyCount.question,
            DailyCount.yes,
            DailyCount.neutral,
            DailyCount.no,
        ).where(DailyCount.page_id == page_id, DailyCount.day.between(start, as_of))
    )
    per_day: dict[date, dict[str, Tally]] = {}
    for day, question, yes, neutral, no in rows:
        per_day.setdefault(day, {})[question] = Tally(yes, neutral, no)
    return [
        {"day": day.isoformat(), **figures_json(per_day.get(day, {}), with_interval=False)}
        for day in _days(start, as_of)
    ]


def _days(start: date, end: date) -> Iterable[date]:
    for offset in range((end - start).days + 1):
        yield start + timedelta(days=offset)
