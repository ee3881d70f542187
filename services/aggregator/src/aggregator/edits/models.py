"""When pages were edited, and the last-modified dates answers voted for."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aggregator.db import Base


class PageModifiedVote(Base):
    """A last-modified date answers gave a page (data.page_modified), with how many
    distinct sources gave it first on their day: an edit needs KOE_PAGE_MIN_SOURCES of
    them (edits/records.py), as a title does."""

    __tablename__ = "page_modified_votes"

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    modified: Mapped[date] = mapped_column(Date, primary_key=True)
    sources: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PageEdit(Base):
    """A page's last-modified date moved on (migration 0013): an edit, whose answers
    before and after the dashboard compares and, four weeks on, the division is told of."""

    __tablename__ = "page_edits"
    # The consumer looks for edits whose four weeks are over and not reported yet.
    __table_args__ = (Index("ix_page_edits_unreported", "report_id", "day"),)

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # The new last-modified date: the day of the edit (city-local, as the CMS prints it).
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    previous: Mapped[date] = mapped_column(Date)
    # "sources" (answers from KOE_PAGE_MIN_SOURCES sources gave it) or "list" (the
    # city's page list did).
    confirmed_by: Mapped[str] = mapped_column(String(8))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The four-week report's alert id once it is in the alert outbox: written once.
    report_id: Mapped[str | None] = mapped_column(String(36))
