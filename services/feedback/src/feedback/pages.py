"""A page's identity: which page an answer is for, fixed at its first accepted answer.

A page is its canonical URL, and its id is derived from it (koe_directory.pages
.page_id_for_url), unless the city's CMS names the page by an id of its own and signs
it: page_sig = the first 32 hex digits of HMAC-SHA256(KOE_CMS_KEY, "koe-page\\n" +
page_id + "\\n" + canonical URL). Without KOE_CMS_KEY, or without page_sig, a page_id
in a POST is ignored: anyone can write any id, and an id names another page's history.
`python -m feedback.cms sign` prints the snippet fields; README, "Embedding the survey", shows
a CMS template computing them. The public /embed generator never signs (it would sign
anything for anyone).

known_pages keeps each page's URL from its first answer: a POST with another URL for
a signed page id is refused (the CMS moved a page: a new id, or an operator's fix),
and a page not seen before spends the source's new-page budget (budgets.py).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from feedback.models import KnownPage
from koe_kit.db import dialect_insert, table_of

SIG_HEX = 32
_pages = table_of(KnownPage)


def page_sig(key: bytes, page_id: str, canonical: str) -> str:
    message = f"koe-page\n{page_id}\n{canonical}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:SIG_HEX]


def signed(key: bytes, page_id: str, canonical: str, sig: str) -> bool:
    return hmac.compare_digest(page_sig(key, page_id, canonical), sig.lower())


class PageMoved(Exception):
    """A known page's id with another URL; nothing may be stored."""


class KnownUrls:
    """The URLs of pages known to be in known_pages, per process: a page's URL never
    changes, so a page answered before needs no query (a round trip per answer saved).
    Only what was read from the database goes in: a row this request inserts may yet be
    rolled back. Bounded: when full, the oldest entry goes."""

    def __init__(self, size: int = 20_000):
        self.size = size
        self._urls: dict[str, str] = {}

    def get(self, page_id: str) -> str | None:
        return self._urls.get(page_id)

    def add(self, page_id: str, url: str) -> None:
        if len(self._urls) >= self.size:
            del self._urls[next(iter(self._urls))]
        self._urls[page_id] = url


def fix(session: Session, page_id: str, url: str, now: datetime, cache: KnownUrls) -> bool:
    """Check the page's URL against its first one; True when the page is new to koe (the
    caller then spends the new-page budget), after recording it."""
    known = cache.get(page_id)
    if known is not None:
        if known != url:
            raise PageMoved(f"page {page_id} is {known}; a page's URL never changes")
        return False
    connection = session.connection()
    known = connection.execute(_URL, {"page_id": page_id}).scalar()
    if known is not None:
        cache.add(page_id, known)
    if known is None:
        inserted = connection.execute(
            _insert(session), {"page_id": page_id, "url": url, "created_at": now}
        ).first()
        if inserted is not None:
            return True
        # Another request made it first (it waited for that one's commit).
        known = connection.execute(_URL, {"page_id": page_id}).scalar_one()
    if known != url:
        raise PageMoved(f"page {page_id} is {known}; a page's URL never changes")
    return False


_URL = select(_pages.c.url).where(_pages.c.page_id == bindparam("page_id"))


def _insert(session: Session):
    return (
        dialect_insert(session, _pages)
        .on_conflict_do_nothing(index_elements=["page_id"])
        .returning(_pages.c.page_id)
    )
