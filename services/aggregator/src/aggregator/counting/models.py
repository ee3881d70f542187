"""What counting keeps: processed events, per-source caps, the daily
counts and the months older days were folded into."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from aggregator.db import UPDATED_IN_PLACE, Base


class ProcessedEvent(Base):
    """Every feedback event counted, by event id: redelivery is recognised and skipped."""

    __tablename__ = "processed_events"
    # Pruning finds the rows past KOE_PROCESSED_KEEP_DAYS by it (pruning.py, migration 0005).
    __table_args__ = (Index("ix_processed_events_processed_at", "processed_at"),)

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    page_id: Mapped[str] = mapped_column(String(128))
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What counting it added (migration 0002), so a response that replaces this
    # one can un-count it (replacements.py). NULL for events counted before 0002.
    day: Mapped[date | None] = mapped_column(Date)
    findability: Mapped[str | None] = mapped_column(String(8))
    clarity: Mapped[str | None] = mapped_column(String(8))
    usefulness: Mapped[str | None] = mapped_column(String(8))
    # Beyond its source's cap for the page and day (migration 0006): kept out of the
    # scores, so a response that replaces it replaces excess, not a counted answer.
    excess: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The language the widget asked in (migration 0010); None for events counted before.
    locale: Mapped[str | None] = mapped_column(String(16))


class SourceCount(Base):
    """Responses per page, city-local day and source (a keyed hash of the client's
    address, see the feedback service's sources.py): at most the cap are counted in the
    page's scores, the rest are excess. Alerts read it to ask for a crowd."""

    __tablename__ = "source_counts"
    __table_args__ = (Index("ix_source_counts_day", "day"), UPDATED_IN_PLACE)

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    counted: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    excess: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DailyExcess(Base):
    """Responses per page and day beyond their sources' caps: shown to admins, never scored."""

    __tablename__ = "daily_excess"
    # The fold finds days past retention by it (retention.py, migration 0015).
    __table_args__ = (Index("ix_daily_excess_day", "day"), UPDATED_IN_PLACE)

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    responses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DailyCount(Base):
    """Answers per page, city-local day (of the event's time) and question."""

    __tablename__ = "daily_counts"
    # Rollups read a range of days of every page by it (rollups.py, migration 0010).
    __table_args__ = (Index("ix_daily_counts_day", "day"), UPDATED_IN_PLACE)

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    question: Mapped[str] = mapped_column(String(32), primary_key=True)
    yes: Mapped[int] = mapped_column(Integer, default=0)
    neutral: Mapped[int] = mapped_column(Integer, default=0)
    no: Mapped[int] = mapped_column(Integer, default=0)


class DailyLocaleCount(Base):
    """daily_counts split by the language the widget asked in (data.locale)."""

    __tablename__ = "daily_locale_counts"
    __table_args__ = (Index("ix_daily_locale_counts_day", "day"), UPDATED_IN_PLACE)

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    locale: Mapped[str] = mapped_column(String(16), primary_key=True)
    question: Mapped[str] = mapped_column(String(32), primary_key=True)
    yes: Mapped[int] = mapped_column(Integer, default=0)
    neutral: Mapped[int] = mapped_column(Integer, default=0)
    no: Mapped[int] = mapped_column(Integer, default=0)


class DailyLocaleResponse(Base):
    """daily_responses split by the language the widget asked in."""

    __tablename__ = "daily_locale_responses"
    __table_args__ = (Index("ix_daily_locale_responses_day", "day"), UPDATED_IN_PLACE)

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    locale: Mapped[str] = mapped_column(String(16), primary_key=True)
    responses: Mapped[int] = mapped_column(Integer, default=0)


class DailyResponse(Base):
    """Responses per page and city-local day: a page's n, which answers per question overstate."""

    __tablename__ = "daily_responses"
    __table_args__ = (Index("ix_daily_responses_day", "day"), UPDATED_IN_PLACE)

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    responses: Mapped[int] = mapped_column(Integer, default=0)


# -- Months (retention.py, migration 0015): daily rows past KOE_DAILY_KEEP_YEARS, folded --------
# Each is its daily table with `day` replaced by `month`, the month's first day; readers
# read both through history.history, so no total changes when a month is folded.


class _PageMonth:
    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)


class _Locale:
    locale: Mapped[str] = mapped_column(String(16), primary_key=True)


class _Answers:
    question: Mapped[str] = mapped_column(String(32), primary_key=True)
    yes: Mapped[int] = mapped_column(Integer, default=0)
    neutral: Mapped[int] = mapped_column(Integer, default=0)
    no: Mapped[int] = mapped_column(Integer, default=0)


class _Responses:
    responses: Mapped[int] = mapped_column(Integer, default=0)


class MonthlyCount(_PageMonth, _Answers, Base):
    __tablename__ = "monthly_counts"


class MonthlyResponse(_PageMonth, _Responses, Base):
    __tablename__ = "monthly_responses"


class MonthlyExcess(_PageMonth, _Responses, Base):
    __tablename__ = "monthly_excess"


class MonthlyLocaleCount(_PageMonth, _Locale, _Answers, Base):
    __tablename__ = "monthly_locale_counts"


class MonthlyLocaleResponse(_PageMonth, _Locale, _Responses, Base):
    __tablename__ = "monthly_locale_responses"
