"""The dashboard's pages list, filtered, sorted and cut into result pages in SQL.

It reads pages joined with their window rollups (rollups.py; with a language, the
rollups of that language's answers), so one screen costs a sort over one narrow row per
page and the figures of the pages shown, instead of summing every page's daily rows.
The figures are stats.page_json's, from the same tallies; only usable while the rollups
end at the day asked for (`current`).

A page nobody has answered for KOE_PAGE_QUIET_DAYS (a page the city took down, an old
notice) leaves the default list, so the list stays about the pages people read; a
search, the "quiet pages too" filter and its own URL still reach it, and its figures
and rollups stay as they are.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, SQLColumnExpression, case, func, select
from sqlalchemy.orm import Session

from aggregator.accounts.models import Account
from aggregator.accounts.visibility import divisions_for, owner_code, visible_pages
from aggregator.counting import rollups
from aggregator.pages.models import Page
from aggregator.stats import figures as stats
from aggregator.stats.scoring import WINDOWS
from koe_directory import Directory
from koe_kit.db import among

# Pages summed at a time from the daily rows (the slow way): bounds the IN list.
CHUNK = 500
# Days without an answer after which a page leaves the default list.
DEFAULT_QUIET_DAYS = 365


@dataclass(frozen=True)
class Query:
    codes: Collection[str]  # the owning divisions' codes the list keeps
    text: str  # in the title or the URL, any case; "" for any page
    sort: str  # score, n or title
    order: str  # asc or desc
    window: str
    # Pages last answered (pages.last_seen) before it are left out; None keeps them.
    quiet_before: datetime | None = None
    # The figures of the answers in one language (a catalogue locale); None for all.
    locale: str | None = None


def current(session: Session, as_of: date) -> bool:
    """Whether the rollups end at `as_of` (else the caller sums the daily rows)."""
    return rollups.current_day(session) == as_of


def count(session: Session, query: Query, directory: Directory) -> int:
    """How many pages the list has in all."""
    wanted = _wanted(directory, query.codes, query.text, query.quiet_before)
    found = select(func.count()).select_from(rollups.joined(query.locale)).where(*wanted)
    return session.scalar(found) or 0


def answered_since(session: Session, page_ids: list[str], moment: datetime) -> list[str]:
    """Those of `page_ids` answered at or after `moment` (for the list summed the slow way)."""
    found: set[str] = set()
    for start in range(0, len(page_ids), CHUNK):
        chunk = page_ids[start : start + CHUNK]
        found.update(
            session.scalars(
                select(Page.id).where(among(session, Page.id, chunk), Page.last_seen >= moment)
            )
        )
    return [page_id for page_id in page_ids if page_id in found]


def screen(
    session: Session,
    query: Query,
    *,
    as_of: date,
    directory: Directory,
    offset: int,
    limit: int,
) -> list[dict]:
    """One result page of the list, as stats.page_json rows without the Wilson intervals
    (the list shows none; they were a sixth of its time).

    The sort orders page ids alone, then the shown pages' wide rows (30 figures a window)
    are read by id: sorting every page's wide row spilled to disk at 10,000 pages."""
    wanted = _wanted(directory, query.codes, query.text, query.quiet_before)
    ids = list(
        session.scalars(
            select(Page.id)
            .select_from(rollups.joined(query.locale))
            .where(*wanted)
            .order_by(*_order(query), Page.id)
            .offset(offset)
            .limit(limit)
        )
    )
    if not ids:
        return []
    rows = {
        row.Page.id: row
        for row in session.execute(_select([among(session, Page.id, ids)], query.locale))
    }
    return [_page_json(rows[page_id], directory, as_of, with_interval=False) for page_id in ids]


def every(
    session: Session, codes: Collection[str], *, as_of: date, directory: Directory
) -> Iterator[dict]:
    """Every visible page of the divisions `codes`, in page id order, read through a
    server-side cursor: for the CSV and the overview, in constant memory."""
    rows = session.execute(
        _select(_wanted(directory, codes)).order_by(Page.id).execution_options(yield_per=500)
    )
    for row in rows:
        yield _page_json(row, directory, as_of)


def visible_figures(
    session: Session,
    directory: Directory,
    account: Account,
    as_of: date,
    locale: str | None = None,
) -> Iterator[dict]:
    """Every page the account may see, with its figures, in page id order: from the
    rollups through one cursor, or (before the consumer moved them to today, or for
    one `locale`'s answers, whose rollups only the pages list reads so far) summed from
    the daily rows CHUNK pages at a time."""
    if locale is None and current(session, as_of):
        codes = {d.code for d in divisions_for(directory, account)}
        yield from every(session, codes, as_of=as_of, directory=directory)
        return
    page_ids = sorted(visible_pages(session, directory, account))
    for start in range(0, len(page_ids), CHUNK):
        chunk = page_ids[start : start + CHUNK]
        yield from stats.list_pages(
            session, as_of=as_of, directory=directory, page_ids=chunk, locale=locale
        )


def _select(wanted: list[SQLColumnExpression[bool]], locale: str | None = None):
    table = rollups.table_for(locale)
    return (
        select(Page, *(table.c[name] for name in rollups.COLUMNS))
        .select_from(rollups.joined(locale))
        .where(*wanted)
    )


def _page_json(row, directory: Directory, as_of: date, *, with_interval: bool = True) -> dict:
    cells = rollups.zero_if_missing(row._mapping)
    tallies, responses = {}, {}
    for window in WINDOWS:
        tallies[window], responses[window] = rollups.tallies(cells, window)
    return stats.page_json(
        row.Page, directory, tallies, responses, as_of, with_interval=with_interval
    )


def _wanted(
    directory: Directory,
    codes: Collection[str],
    text: str = "",
    quiet_before: datetime | None = None,
) -> list[SQLColumnExpression[bool]]:
    wanted = [Page.visible, owner_code(directory).in_(list(codes))]
    if quiet_before is not None:
        wanted.append(Page.last_seen >= quiet_before)
    if text:
        needle = text.casefold()
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
        key = func.coalesce(rollups.responses(query.window, rollups.table_for(query.locale)), 0)
    else:
        key = rollups.score(query.window, rollups.table_for(query.locale))
    unknown = case((key.is_(None), 1), else_=0)
    return [unknown, key.desc() if query.order == "desc" else key.asc()]
