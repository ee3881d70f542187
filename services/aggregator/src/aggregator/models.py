"""The aggregator's own tables (no other service reads them)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


# Rows updated in place by every batch: room for HOT updates (see migration 0001).
_UPDATED_IN_PLACE = {"postgresql_with": {"fillfactor": 70}}


class ProcessedEvent(Base):
    """Every feedback event counted, by event id: redelivery is recognised and skipped."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    page_id: Mapped[str] = mapped_column(String(128))
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DailyCount(Base):
    """Answers per page, city-local day (of the event's time) and question."""

    __tablename__ = "daily_counts"
    __table_args__ = _UPDATED_IN_PLACE

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    question: Mapped[str] = mapped_column(String(32), primary_key=True)
    yes: Mapped[int] = mapped_column(Integer, default=0)
    neutral: Mapped[int] = mapped_column(Integer, default=0)
    no: Mapped[int] = mapped_column(Integer, default=0)


class DailyResponse(Base):
    """Responses per page and city-local day: a page's n, which answers per question overstate."""

    __tablename__ = "daily_responses"
    __table_args__ = _UPDATED_IN_PLACE

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    responses: Mapped[int] = mapped_column(Integer, default=0)


class Page(Base):
    __tablename__ = "pages"
    __table_args__ = _UPDATED_IN_PLACE

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    title: Mapped[str | None] = mapped_column(String(200))
    division: Mapped[str | None] = mapped_column(String(64), index=True)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AlertState(Base):
    """The last alert per page and question, for the cooldown."""

    __tablename__ = "alert_state"

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    question: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_alert_day: Mapped[date] = mapped_column(Date)
    last_alert_id: Mapped[str] = mapped_column(String(36))


class AlertOutbox(Base):
    """Alerts written with the counts that caused them, published after the commit."""

    __tablename__ = "alert_outbox"
    __table_args__ = (Index("ix_alert_outbox_unsent", "sent_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(36), unique=True)
    page_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
