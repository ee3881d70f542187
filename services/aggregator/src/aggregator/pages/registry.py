"""What a batch of answers may change about the pages they name (issue 11).

Anything in an answer is the sender's to choose, so an answer cannot redefine a page:

- The URL is the one of the page's first sighting (an answer, or the city's page list,
  which may correct it); a later answer naming the page with another URL changes nothing.
- The division is never taken from an answer, nor stored: divisions.yaml gives it from
  the URL whenever a page is read.
- The title is the city's page list's when it gives one. Otherwise a title becomes the
  page's once `min_sources` distinct sources sent it, each counted once, with the first
  answer of its day on the page (a source is one address on one city-local day), so one
  person cannot rename a page that divisions see in their email and dashboard.
- A page is shown (visible) once `min_sources` distinct sources answered it, or the
  city's page list named it; it then stays shown. The count of sources lives on the
  page, because retention deletes the source_counts rows it was made from.

An answer without a source was sent before the feedback service stamped sources: it
counts as it did then, so its page is shown and its title taken at once, and replaying
an old topic into a new database shows what it showed before.

All of it is one grouped read and two upserts a batch, and depends only on the events
and their order (a page's events arrive in order: key = page id), so a replay gives
the same pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, literal, or_, select
from sqlalchemy.orm import Session

from aggregator.pages.models import Page, PageTitle
from koe_kit.db import Upsert, among, among_rows, bulk_add, bulk_insert, table_of

# One person easily has three addresses in a day (home, phone, office): five sources
# take two days or five addresses, and a page with five answers in all is no news yet
# (README, "Pages", has the numbers).
DEFAULT_MIN_SOURCES = 5

_IN_CHUNK = 500


@dataclass
class _Seen:
    url: str
    first_seen: datetime
    last_seen: datetime
    sources: int = 0
    shown: bool = False
    # The titles of the page, in event order: (title, None) for a source's vote,
    # (title, True) for an answer without a source, which sets it at once.
    titles: list[tuple[str, bool]] = field(default_factory=list)


class PageSightings:
    """The pages a batch names, and what its answers may change about them."""

    def __init__(self, min_sources: int):
        self.min_sources = min_sources
        self._pages: dict[str, _Seen] = {}

    def seen(self, page_id: str, url: str, moment: datetime) -> None:
        page = self._pages.get(page_id)
        if page is None:
            # The first sighting's URL; a later one in this batch (or a later batch)
            # does not replace it.
            self._pages[page_id] = _Seen(url, moment, moment)
            return
        page.first_seen = min(page.first_seen, moment)
        page.last_seen = max(page.last_seen, moment)

    def new_source(self, page_id: str, title: str | None) -> None:
        """A source's first answer of its day on the page: one more source, one vote."""
        page = self._pages[page_id]
        page.sources += 1
        if title:
            page.titles.append((title, False))

    def without_source(self, page_id: str, title: str | None) -> None:
        page = self._pages[page_id]
        page.shown = True
        if title:
            page.titles.append((title, True))

    def write(self, session: Session) -> None:
        if not self._pages:
            return
        titles = self._titles(session)
        _upsert_pages(session, self._pages, titles, self.min_sources)

    def _titles(self, session: Session) -> dict[str, str]:
        """Count the votes for titles; page id → the title the batch gives it, if any:
        the last one to reach `min_sources` votes (or sent without a source)."""
        votes = {
            (page_id, title): 0
            for page_id, page in self._pages.items()
            for title, at_once in page.titles
            if not at_once
        }
        running = _votes(session, list(votes))
        chosen: dict[str, str] = {}
        for page_id, page in self._pages.items():
            for title, at_once in page.titles:
                if at_once:
                    chosen[page_id] = title
                    continue
                votes[page_id, title] += 1
                had = running.get((page_id, title), 0)
                running[page_id, title] = had + 1
                if had < self.min_sources <= had + 1:
                    chosen[page_id] = title
        _add_votes(session, votes)
        return chosen


def shown(session: Session, page_ids: list[str]) -> set[str]:
    """Which of these pages are shown: only they are judged for alerts, so no division is
    emailed about a page it cannot see."""
    found: set[str] = set()
    for start in range(0, len(page_ids), _IN_CHUNK):
        chunk = page_ids[start : start + _IN_CHUNK]
        found.update(
            session.scalars(select(Page.id).where(among(session, Page.id, chunk), Page.visible))
        )
    return found


def _votes(session: Session, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The votes counted before for these (page id, title) pairs."""
    found: dict[tuple[str, str], int] = {}
    for start in range(0, len(pairs), _IN_CHUNK):
        rows = session.execute(
            select(PageTitle.page_id, PageTitle.title, PageTitle.sources).where(
                among_rows(
                    session, (PageTitle.page_id, PageTitle.title), pairs[start : start + _IN_CHUNK]
                )
            )
        )
        found.update({(page_id, title): sources for page_id, title, sources in rows})
    return found


def _add_votes(session: Session, votes: dict[tuple[str, str], int]) -> None:
    rows = [{"page_id": p, "title": t, "sources": n} for (p, t), n in votes.items()]
    bulk_add(session, table_of(PageTitle), rows, ["page_id", "title"], ["sources"])


def _upsert_pages(
    session: Session, pages: dict[str, _Seen], titles: dict[str, str], min_sources: int
) -> None:
    table = table_of(Page)

    def merge(insert: Upsert) -> Upsert:
        new = insert.excluded
        sources = table.c.sources + new.sources
        return insert.on_conflict_do_update(
            index_elements=["id"],
            # Not the URL: it stays the first sighting's.
            set_={
                "title": case(
                    (table.c.title_from_list, table.c.title),
                    (new.title.is_not(None), new.title),
                    else_=table.c.title,
                ),
                "sources": sources,
                "visible": or_(table.c.visible, new.visible, sources >= literal(min_sources)),
                "first_seen": case(
                    (new.first_seen < table.c.first_seen, new.first_seen),
                    else_=table.c.first_seen,
                ),
                "last_seen": case(
                    (new.last_seen > table.c.last_seen, new.last_seen),
                    else_=table.c.last_seen,
                ),
            },
        )

    rows = [
        {
            "id": page_id,
            "url": page.url,
            "title": titles.get(page_id),
            "title_from_list": False,
            "sources": page.sources,
            "visible": page.shown or page.sources >= min_sources,
            "first_seen": page.first_seen,
            "last_seen": page.last_seen,
        }
        for page_id, page in pages.items()
    ]
    bulk_insert(session, table, rows, merge)
