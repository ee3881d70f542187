"""Read side of the stats API: window and daily figures from daily_counts and daily_responses
(with the months older days were folded into: history.py).

Only visible pages (enough sources answered them, or the city's page list names them:
pages/registry.py) are listed or detailed; a hidden page reads as one that does not
exist. A page's division is divisions.yaml's for its URL.

A page's n is its responses (daily_responses); a question's n is the answers to
it (daily_counts). One response answers up to three questions, so summing the
questions would overstate how many people answered.

A whole listing costs three queries (the pages, and per table one grouped query
summing every window at once with CASE), whatever the number of pages.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.orm import Session

from aggregator.counting.models import (
    DailyCount,
    DailyExcess,
    DailyLocaleCount,
    DailyLocaleResponse,
    DailyResponse,
)
from aggregator.pages.models import Page
from aggregator.stats.history import history, month_of
from aggregator.stats.scoring import (
    WINDOWS,
    Tally,
    page_score,
    question_score,
    rounded,
    wilson_interval,
    window_ending,
)
from koe_directory import ANSWERS, QUESTION_KEYS, Directory
from koe_kit.db import among

# page id -> window name -> question -> tally
WindowTallies = dict[str, dict[str, dict[str, Tally]]]
# page id -> window name -> responses
WindowResponses = dict[str, dict[str, int]]


def list_pages(
    session: Session,
    *,
    as_of: date,
    directory: Directory,
    page_ids: Collection[str] | None = None,
    locale: str | None = None,
) -> list[dict]:
    """Every visible page (or those among `page_ids`: the dashboard's visible pages).
    With a `locale`: the pages answered in that language, with those answers' figures."""
    query = select(Page).where(Page.visible).order_by(Page.id)
    if page_ids is not None:
        query = query.where(among(session, Page.id, list(page_ids)))
    pages = list(session.scalars(query))
    tallies = _window_tallies(session, as_of, page_ids=page_ids, locale=locale)
    responses = _window_responses(session, as_of, page_ids=page_ids, locale=locale)
    return [
        page_json(page, directory, tallies.get(page.id, {}), responses.get(page.id, {}), as_of)
        for page in pages
        if locale is None or page.id in tallies
    ]


def list_pages_after(
    session: Session,
    *,
    as_of: date,
    directory: Directory,
    after: str | None,
    limit: int,
    division: str | None = None,
    locale: str | None = None,
) -> tuple[list[dict], str | None]:
    """One result page of the visible pages in id order, from the first id after `after`,
    and the id to continue after (None on the last one).

    Keyset paging: each request reads at most `limit` pages' rows (plus, with a division,
    the pages of other divisions it skips), so its cost does not grow with the city's
    size, and a page added between two requests neither shifts nor repeats the others.
    """
    chosen: list[Page] = []
    cursor, more = after, True
    # divisions.yaml decides a page's division from its URL (longest prefix), which SQL
    # cannot ask: read ids in batches and keep the division's until the page is full.
    batch = limit + 1 if division is None else max(limit + 1, 500)
    while more and len(chosen) <= limit:
        query = select(Page).where(Page.visible).order_by(Page.id).limit(batch)
        if cursor is not None:
            query = query.where(Page.id > cursor)
        read = list(session.scalars(query))
        more = len(read) == batch
        for page in read:
            if division is None or directory.prefix_code(page.url) == division:
                chosen.append(page)
                if len(chosen) > limit:
                    break
        if read:
            cursor = read[-1].id
    has_next = len(chosen) > limit
    chosen = chosen[:limit]
    page_ids = [page.id for page in chosen]
    tallies = _window_tallies(session, as_of, page_ids=page_ids, locale=locale)
    responses = _window_responses(session, as_of, page_ids=page_ids, locale=locale)
    listed = [
        page_json(page, directory, tallies.get(page.id, {}), responses.get(page.id, {}), as_of)
        for page in chosen
    ]
    return listed, (page_ids[-1] if has_next else None)


def page_detail(
    session: Session, page_id: str, *, as_of: date, days: int, directory: Directory
) -> dict | None:
    """A visible page's windows and daily series; None for a page not (yet) shown."""
    page = session.get(Page, page_id)
    if page is None or not page.visible:
        return None
    tallies = _window_tallies(session, as_of, page_id=page_id)
    responses = _window_responses(session, as_of, page_id=page_id)
    result = page_json(page, directory, tallies.get(page_id, {}), responses.get(page_id, {}), as_of)
    result["daily"] = _daily_series(session, page_id, as_of, days)
    return result


def excess_by_window(session: Session, page_id: str, as_of: date) -> dict[str, int]:
    """Responses beyond their sources' caps (counting/source_ledger.py) per window: for admins
    only."""
    excess = history(DailyExcess).c
    columns = [
        window_sum(excess.day, excess.responses, as_of, length).label(name)
        for name, length in WINDOWS.items()
    ]
    row = session.execute(
        select(*columns).where(excess.page_id == page_id, excess.day <= as_of)
    ).one()
    return {name: int(getattr(row, name)) for name in WINDOWS}


def _window_tallies(
    session: Session,
    as_of: date,
    *,
    page_id: str | None = None,
    page_ids: Collection[str] | None = None,
    locale: str | None = None,
) -> WindowTallies:
    """Per page, window and question; with a `locale`, of the answers in that language
    only (locale_split.py's tables, which ingest.py keeps beside daily_counts)."""
    counts = history(DailyCount if locale is None else DailyLocaleCount).c
    columns = [
        window_sum(counts.day, counts[answer], as_of, length).label(f"{name}_{answer}")
        for name, length in WINDOWS.items()
        for answer in ANSWERS
    ]
    query = (
        select(counts.page_id, counts.question, *columns)
        .where(counts.day <= as_of)
        .group_by(counts.page_id, counts.question)
    )
    if locale is not None:
        query = query.where(counts.locale == locale)
    query = _only_pages(session, query, counts.page_id, page_id=page_id, page_ids=page_ids)
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


def _window_responses(
    session: Session,
    as_of: date,
    *,
    page_id: str | None = None,
    page_ids: Collection[str] | None = None,
    locale: str | None = None,
) -> WindowResponses:
    answered = history(DailyResponse if locale is None else DailyLocaleResponse).c
    columns = [
        window_sum(answered.day, answered.responses, as_of, length).label(name)
        for name, length in WINDOWS.items()
    ]
    query = (
        select(answered.page_id, *columns).where(answered.day <= as_of).group_by(answered.page_id)
    )
    if locale is not None:
        query = query.where(answered.locale == locale)
    query = _only_pages(session, query, answered.page_id, page_id=page_id, page_ids=page_ids)
    return {
        row.page_id: {name: int(getattr(row, name)) for name in WINDOWS}
        for row in session.execute(query)
    }


def window_sum(
    day: ColumnElement[date], value: ColumnElement[int], as_of: date, length: int | None
) -> ColumnElement[int]:
    """SUM of `value` over the window ending at `as_of` (the caller bounds day <= as_of)."""
    start = window_ending(as_of, length).start
    summed = value if start is None else case((day >= start, value), else_=0)
    return func.coalesce(func.sum(summed), 0)


def _only_pages(
    session: Session,
    query: Select,
    page_column: ColumnElement[str],
    *,
    page_id: str | None,
    page_ids: Collection[str] | None,
) -> Select:
    """The query over one page, the given pages, or else every visible page."""
    if page_id is not None:
        return query.where(page_column == page_id)
    if page_ids is not None:
        return query.where(among(session, page_column, list(page_ids)))
    return query.where(page_column.in_(select(Page.id).where(Page.visible)))


def page_json(
    page: Page,
    directory: Directory,
    tallies: Mapping[str, Mapping[str, Tally]],
    responses: Mapping[str, int],
    as_of: date,
    *,
    with_interval: bool = True,
) -> dict:
    windows = {}
    for name, length in WINDOWS.items():
        window = window_ending(as_of, length)
        figures = figures_json(
            tallies.get(name, {}), responses.get(name, 0), with_interval=with_interval
        )
        windows[name] = {
            "start": window.start.isoformat() if window.start else None,
            "end": window.end.isoformat(),
            **figures,
        }
    return {
        "id": page.id,
        "url": page.url,
        "title": page.title,
        "division": directory.prefix_code(page.url),
        "as_of": as_of.isoformat(),
        "windows": windows,
    }


def figures_json(
    per_question: Mapping[str, Tally], responses: int, *, with_interval: bool = True
) -> dict:
    """n and score for the page (n = responses) and per question (n = answers to it)."""
    tallies = [per_question.get(q, Tally()) for q in QUESTION_KEYS]
    return {
        "n": responses,
        "score": rounded(page_score(tallies)),
        "questions": {
            q: tally_json(t, with_interval=with_interval)
            for q, t in zip(QUESTION_KEYS, tallies, strict=True)
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
    """A point per day from as_of - days + 1 to as_of; a month folded into one row
    (retention.py) is one point, on its first day, marked `"period": "month"`."""
    start = as_of - timedelta(days=days - 1)
    counts, answered = history(DailyCount).c, history(DailyResponse).c
    # From the first of start's month: a folded month that began before start overlaps it.
    count_rows = session.execute(
        select(
            counts.day, counts.monthly, counts.question, counts.yes, counts.neutral, counts.no
        ).where(counts.page_id == page_id, counts.day.between(month_of(start), as_of))
    ).all()
    response_rows = session.execute(
        select(answered.day, answered.monthly, answered.responses).where(
            answered.page_id == page_id, answered.day.between(month_of(start), as_of)
        )
    ).all()
    months = {row.day for row in [*count_rows, *response_rows] if row.monthly}

    def point(day: date) -> date:
        """The series point a row of `day` adds to."""
        return month_of(day) if month_of(day) in months else day

    per_point: dict[date, dict[str, Tally]] = {}
    responses: dict[date, int] = {}
    for day, _, question, yes, neutral, no in count_rows:
        if day >= start or month_of(day) in months:
            tallies = per_point.setdefault(point(day), {})
            tallies[question] = tallies.get(question, Tally()) + Tally(yes, neutral, no)
    for day, _, count in response_rows:
        if day >= start or month_of(day) in months:
            responses[point(day)] = responses.get(point(day), 0) + count
    series = []
    for day in _days(start, as_of):
        at = point(day)
        if at != day and day != start:
            continue  # a later day of a folded month: its point is there already
        series.append(
            {
                "day": at.isoformat(),
                **({"period": "month"} if at in months else {}),
                **figures_json(per_point.get(at, {}), responses.get(at, 0), with_interval=False),
            }
        )
    return series


def _days(start: date, end: date) -> Iterable[date]:
    for offset in range((end - start).days + 1):
        yield start + timedelta(days=offset)
