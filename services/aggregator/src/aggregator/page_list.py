"""The dashboard's pages list, filtered, sorted and cut into result pages in SQL.

It reads pages joined with their window rollups (rollups.py), so one screen costs a
sort over one narrow row per page and the figures of the pages shown, instead of
summing every page's daily rows. The figures are stats.page_json's, from the same
tallies; only usable while the rollups end at the day asked for (`current`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from aggregator import rollups, stats
from aggregator.models import Page
from aggregator.scoring import WINDOWS
from aggregator.visibility import owner_code
from koe_directory import Directory


@dataclass(frozen=True)
class Query:
    codes: Collection[str]  # the owning divisions' codes the list keeps
    text: str  # in the title or the URL, any case; "" for any page
    sort: str  # score, n or title
    order: str  # asc or desc
    window: str


def current(session: Session, as_of: date) -> bool:
    """Whether the rollups end at `as_of` (else the caller sums the daily rows)."""
    return rollups.current_day(session) == as_of


def count(session: Session, query: Query, directory: Directory) -> int:
    """How many pages the list has in all."""
    found = select(func.count()).select_from(rollups.joined()).where(*_wanted(query, directory))
    return session.scalar(found) or 0


def screen(
    session: Session,
    query: Query,
    *,
    as_of: date,
    directory: Directory,
    offset: int,
    limit: int,
) -> list[dict]:
    """One result page of the list, as stats.page_json rows."""
    rows = session.execute(
        select(Page, *(rollups.page_rollups.c[name] for name in rollups.COLUMNS))
        .select_from(rollups.joined())
        .where(*_wanted(query, directory))
        .order_by(*_order(query), Page.id)
        .offset(offset)
        .limit(limit)
    )
    shown = []
    for row in rows:
        cells = rollups.zero_if_missing(row._mapping)
        tallies, responses = {}, {}
        for window in WINDOWS:
            tallies[window], responses[window] = rollups.tallies(cells, window)
        shown.append(stats.page_json(row.Page, directory, tallies, responses, as_of))
    return shown


def _wanted(query: Query, directory: Directory) -> list[ColumnElement[bool]]:
    wanted = [Page.visible, owner_code(directory).in_(list(query.codes))]
    if query.text:
        needle = query.text.casefold()
        wanted.append(
            func.lower(func.coalesce(Page.title, "")).contains(needle, autoescape=True)
            | func.lower(Page.url).contains(needle, autoescape=True)
        )
    return wanted


def _order(query: Query) -> list[ColumnElement]:
    """As the list always sorted: a page nobody answered (no score) last whichever the
    order; equal values in page id order."""
    if query.sort == "title":
        key: ColumnElement = func.lower(func.coalesce(func.nullif(Page.title, ""), Page.url))
    elif query.sort == "n":
        key = func.coalesce(rollups.responses(query.window), 0)
    else:
        key = rollups.score(query.window)
    unknown = case((key.is_(None), 1), else_=0)
    return [unknown, key.desc() if query.order == "desc" else key.asc()]
