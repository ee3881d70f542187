"""The city's page list into the pages table (`python -m aggregator.pages import FILE`).

The list is the city's word (its CMS or its web team exports it), not an answer's:
- every page it names is shown at once, answered or not, with no crowd of sources;
- its URL is the page's (it may correct the first sighting's, as divisions.yaml's
  prefixes are read from it);
- a title it gives is the page's and no answer replaces it; a page it names without a
  title (a sitemap has none) keeps the title answers gave it (pages/registry.py);
- a last-modified date it gives is the page's, and a later one than koe knew is an edit
  (edits/records.py).
Importing the same list again changes nothing; a page the list no longer names stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, select, true
from sqlalchemy.orm import Session

from aggregator.edits.records import record_listed
from aggregator.pages.models import Page
from koe_directory.page_list import ListedPage
from koe_kit.db import Upsert, among, bulk_insert, table_of

_IN_CHUNK = 500


@dataclass(frozen=True)
class Imported:
    listed: int
    new: int  # not known before: no answer yet, nor an earlier list
    edits: int = 0  # later last-modified dates than koe knew


def import_pages(session: Session, listed: list[ListedPage], now: datetime) -> Imported:
    if not listed:
        return Imported(0, 0)
    ids = [page.page_id for page in listed]
    known: set[str] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        known.update(
            session.scalars(
                select(Page.id).where(among(session, Page.id, ids[start : start + _IN_CHUNK]))
            )
        )
    table = table_of(Page)

    def merge(insert: Upsert) -> Upsert:
        new = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "url": new.url,
                "title": case((new.title.is_not(None), new.title), else_=table.c.title),
                "title_from_list": table.c.title_from_list | new.title_from_list,
                "visible": true(),
            },
        )

    rows = [
        {
            "id": page.page_id,
            "url": page.url,
            "title": page.title,
            "title_from_list": page.title is not None,
            "sources": 0,
            "visible": True,
            "first_seen": now,
            "last_seen": now,
        }
        for page in listed
    ]
    bulk_insert(session, table, rows, merge)
    edits = record_listed(
        session, [(p.page_id, p.modified) for p in listed if p.modified is not None], now
    )
    return Imported(listed=len(listed), new=len(set(ids) - known), edits=len(edits))
