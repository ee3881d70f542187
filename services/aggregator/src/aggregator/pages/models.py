"""Pages koe has heard of, and their titles."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from aggregator.db import UPDATED_IN_PLACE, Base


class Page(Base):
    """A page koe has heard of: from an answer, or from the city's page list.

    Its URL is fixed at its first sighting and its division is divisions.yaml's for that
    URL, never stored (pages/registry.py). Its title changes only by the README's rule.
    """

    __tablename__ = "pages"
    __table_args__ = UPDATED_IN_PLACE

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    title: Mapped[str | None] = mapped_column(String(200))
    # The title is the city's page list's: no answer's title replaces it.
    title_from_list: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Distinct sources that answered it (a source is one address on one city-local day),
    # kept here because retention deletes source_counts rows (migration 0007).
    sources: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Shown in the dashboard, the stats API and the CSV: set once enough sources answered
    # it or the city's page list named it, and never unset.
    visible: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Its last-modified date as koe knows it (migration 0013): the first one confirmed,
    # then each later one, which is an edit (edits/records.py). None: never confirmed.
    modified: Mapped[date | None] = mapped_column(Date)
    # The date is the city's page list's: answers no longer move it.
    modified_from_list: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class PageTitle(Base):
    """A title answers sent for a page, with how many distinct sources sent it first on
    their day: a title answers give a page needs KOE_PAGE_MIN_SOURCES of them."""

    __tablename__ = "page_titles"

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str] = mapped_column(String(200), primary_key=True)
    sources: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
