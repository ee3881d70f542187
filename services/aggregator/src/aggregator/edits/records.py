"""When a page was edited: its last-modified date moved on, by the crowd or by the list.

`page_modified` is the sender's to write, so no answer makes an edit on its own:
- a date counts once per source and day (a source is one address on one city-local
  day), with that source's first answer of its day on the page, as a title's votes do
  (pages/registry.py); a date later than the answer's own city-local day is no vote
  (a page cannot have been modified after it was read);
- a date becomes the page's once KOE_PAGE_MIN_SOURCES sources gave it. The first date a
  page gets is where koe starts (no edit: koe saw nothing before it); each later date
  that gets there is an edit. A date earlier than the page's is never one (a stale
  cache, or someone trying to move the marker back);
- the city's page list (sitemap <lastmod>, or a CSV `modified` column) is the city's
  word: its date is the page's at once, a later one is an edit, and from then on the
  answers' dates no longer move that page.
One person therefore needs five addresses, or five days, to make an edit up, and then
gets one marker on a chart and one email of numbers; a city that imports its page list
makes that impossible.

Everything depends only on the events and their order (a page's events come in order
on its partition), so a replay records the same edits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from aggregator.edits.models import PageEdit, PageModifiedVote
from aggregator.pages.models import Page
from koe_kit.db import among, among_rows, bulk_add, dialect_insert, table_of

_IN_CHUNK = 500

BY_SOURCES = "sources"
BY_LIST = "list"


@dataclass(frozen=True)
class Edit:
    page_id: str
    day: date
    previous: date
    confirmed_by: str


class ModifiedDates:
    """The last-modified dates a batch's answers give its pages, as votes."""

    def __init__(self, min_sources: int):
        self.min_sources = min_sources
        self._votes: dict[str, list[date]] = {}

    def vote(self, page_id: str, modified: str | None, day: date) -> None:
        """A source's first answer of its day on the page (ingest.py) carried `modified`."""
        if modified is None:
            return
        when = date.fromisoformat(modified)
        if when <= day:
            self._votes.setdefault(page_id, []).append(when)

    def write(self, session: Session, now: datetime) -> list[Edit]:
        """Add the votes; move the pages whose date got enough of them; the edits."""
        if not self._votes:
            return []
        counts = {(p, d): 0 for p, dates in self._votes.items() for d in dates}
        running = _votes(session, list(counts))
        reached: dict[str, list[date]] = {}
        for page_id, dates in self._votes.items():
            for when in dates:
                counts[page_id, when] += 1
                had = running.get((page_id, when), 0)
                running[page_id, when] = had + 1
                if had < self.min_sources <= had + 1:
                    reached.setdefault(page_id, []).append(when)
        rows = [{"page_id": p, "modified": d, "sources": n} for (p, d), n in counts.items()]
        bulk_add(session, table_of(PageModifiedVote), rows, ["page_id", "modified"], ["sources"])
        return _move(session, reached, BY_SOURCES, now)


def record_listed(session: Session, dates: Iterable[tuple[str, date]], now: datetime) -> list[Edit]:
    """The city's page list's dates (page id, last-modified): the pages' from now on."""
    given = dict(dates)
    if not given:
        return []
    edits = _move(session, {p: [d] for p, d in given.items()}, BY_LIST, now)
    table, page_ids = table_of(Page), list(given)
    for start in range(0, len(page_ids), _IN_CHUNK):
        chunk = page_ids[start : start + _IN_CHUNK]
        session.execute(
            update(table).where(among(session, table.c.id, chunk)).values(modified_from_list=True)
        )
    return edits


def _move(
    session: Session, reached: dict[str, list[date]], confirmed_by: str, now: datetime
) -> list[Edit]:
    """Each page's date to the latest of `reached` that is later than its own, in order;
    an edit for each move from a known date. Answers do not move a listed page's date.
    Every page is in the pages table already: the batch's sightings, or the list's import,
    were written first."""
    known = _known(session, list(reached))
    edits: list[Edit] = []
    moved: list[dict] = []
    for page_id, dates in reached.items():
        current, from_list = known[page_id]
        if from_list and confirmed_by == BY_SOURCES:
            continue
        start = current
        for when in dates:
            if current is not None and when <= current:
                continue
            if current is not None:
                edits.append(Edit(page_id, when, current, confirmed_by))
            current = when
        if current != start:
            moved.append({"pid": page_id, "modified": current})
    if moved:
        table = table_of(Page)
        session.execute(
            update(table)
            .where(table.c.id == bindparam("pid"))
            .values(modified=bindparam("modified")),
            moved,
        )
    if edits:
        insert = dialect_insert(session, table_of(PageEdit)).on_conflict_do_nothing(
            index_elements=["page_id", "day"]
        )
        session.execute(
            insert,
            [
                {
                    "page_id": e.page_id,
                    "day": e.day,
                    "previous": e.previous,
                    "confirmed_by": e.confirmed_by,
                    "recorded_at": now,
                    "report_id": None,
                }
                for e in edits
            ],
        )
    return edits


def _known(session: Session, page_ids: list[str]) -> dict[str, tuple[date | None, bool]]:
    found: dict[str, tuple[date | None, bool]] = {}
    for start in range(0, len(page_ids), _IN_CHUNK):
        chunk = page_ids[start : start + _IN_CHUNK]
        rows = session.execute(
            select(Page.id, Page.modified, Page.modified_from_list).where(
                among(session, Page.id, chunk)
            )
        )
        found.update({row.id: (row.modified, row.modified_from_list) for row in rows})
    return found


def _votes(session: Session, pairs: list[tuple[str, date]]) -> dict[tuple[str, date], int]:
    found: dict[tuple[str, date], int] = {}
    for start in range(0, len(pairs), _IN_CHUNK):
        rows = session.execute(
            select(
                PageModifiedVote.page_id, PageModifiedVote.modified, PageModifiedVote.sources
            ).where(
                among_rows(
                    session,
                    (PageModifiedVote.page_id, PageModifiedVote.modified),
                    pairs[start : start + _IN_CHUNK],
                )
            )
        )
        found.update({(p, d): n for p, d, n in rows})
    return found


def page_edits(session: Session, page_id: str) -> list[PageEdit]:
    """A page's edits, oldest first (its view marks and compares them)."""
    return list(
        session.scalars(select(PageEdit).where(PageEdit.page_id == page_id).order_by(PageEdit.day))
    )
