"""The aggregator's own tables (no other service reads them)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


# Rows updated in place by every batch: room for HOT updates (see migration 0001).
_UPDATED_IN_PLACE = {"postgresql_with": {"fillfactor": 70}}


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
    __table_args__ = (Index("ix_source_counts_day", "day"), _UPDATED_IN_PLACE)

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    counted: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    excess: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DailyExcess(Base):
    """Responses per page and day beyond their sources' caps: shown to admins, never scored."""

    __tablename__ = "daily_excess"
    # The fold finds days past retention by it (retention.py, migration 0015).
    __table_args__ = (Index("ix_daily_excess_day", "day"), _UPDATED_IN_PLACE)

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    responses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DailyCount(Base):
    """Answers per page, city-local day (of the event's time) and question."""

    __tablename__ = "daily_counts"
    # Rollups read a range of days of every page by it (rollups.py, migration 0010).
    __table_args__ = (Index("ix_daily_counts_day", "day"), _UPDATED_IN_PLACE)

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    question: Mapped[str] = mapped_column(String(32), primary_key=True)
    yes: Mapped[int] = mapped_column(Integer, default=0)
    neutral: Mapped[int] = mapped_column(Integer, default=0)
    no: Mapped[int] = mapped_column(Integer, default=0)


class DailyLocaleCount(Base):
    """daily_counts split by the language the widget asked in (data.locale)."""

    __tablename__ = "daily_locale_counts"
    __table_args__ = (Index("ix_daily_locale_counts_day", "day"), _UPDATED_IN_PLACE)

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
    __table_args__ = (Index("ix_daily_locale_responses_day", "day"), _UPDATED_IN_PLACE)

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    locale: Mapped[str] = mapped_column(String(16), primary_key=True)
    responses: Mapped[int] = mapped_column(Integer, default=0)


class DailyResponse(Base):
    """Responses per page and city-local day: a page's n, which answers per question overstate."""

    __tablename__ = "daily_responses"
    __table_args__ = (Index("ix_daily_responses_day", "day"), _UPDATED_IN_PLACE)

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


class Page(Base):
    """A page koe has heard of: from an answer, or from the city's page list.

    Its URL is fixed at its first sighting and its division is divisions.yaml's for that
    URL, never stored (pages/registry.py). Its title changes only by the README's rule.
    """

    __tablename__ = "pages"
    __table_args__ = _UPDATED_IN_PLACE

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


class DetectorState(Base):
    """The drop detector's state per page and question (detector.State), kept between
    the days it judges (detector_alerts.py, migration 0009)."""

    __tablename__ = "detector_state"
    __table_args__ = _UPDATED_IN_PLACE

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    question: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_day: Mapped[date] = mapped_column(Date)
    restart: Mapped[date | None] = mapped_column(Date)
    quiet_until: Mapped[date | None] = mapped_column(Date)
    streak: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # An open drop: its alarm day, the reference it dropped from, the chart answers that
    # alarmed, and the drop email it belongs to (a recovery names it).
    dropped_day: Mapped[date | None] = mapped_column(Date)
    dropped_from_yes: Mapped[int | None] = mapped_column(Integer)
    dropped_from_neutral: Mapped[int | None] = mapped_column(Integer)
    dropped_from_no: Mapped[int | None] = mapped_column(Integer)
    dropped_yes: Mapped[int | None] = mapped_column(Integer)
    dropped_neutral: Mapped[int | None] = mapped_column(Integer)
    dropped_no: Mapped[int | None] = mapped_column(Integer)
    drop_alert_id: Mapped[str | None] = mapped_column(String(36))


class AlertOutbox(Base):
    """Alerts written with the counts that caused them, published after the commit."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        Index("ix_alert_outbox_unsent", "sent_at", "id"),
        Index("ix_alert_outbox_held", "held_reason"),
        # The pages list's open alerts of its 100 pages, and the alerts list's newest
        # first, without reading every alert (migration 0019).
        Index("ix_alert_outbox_page_id", "page_id"),
        Index("ix_alert_outbox_created_at", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(36), unique=True)
    page_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Held for review (crowd.py, migration 0008): not published until an admin releases
    # it; a dismissed one never is. held_evidence is crowd.Evidence.as_json.
    held_reason: Mapped[str | None] = mapped_column(String(32))
    held_evidence: Mapped[str | None] = mapped_column(Text)
    released_by: Mapped[str | None] = mapped_column(String(254))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dismissed_by: Mapped[str | None] = mapped_column(String(254))
    dismissed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A four-week report on an edit (migration 0013), not an alert: it travels the same
    # way to the notifier, but no alerts list shows it and nobody marks it handled.
    edit_report: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


def publishable(alert=AlertOutbox):
    """An alert (or an alias of the table) that may be published: never held, or released
    by an admin. A dismissed one was held and is never released."""
    return alert.held_reason.is_(None) | alert.released_at.is_not(None)


# -- Dashboard (issue 4): accounts, their sessions, sign-in throttling, alert handling --------


class Account(Base):
    """Who may sign in to the dashboard: an admin, or one division's clerk.

    Created with `python -m aggregator.accounts`; the password is kept only as a
    werkzeug scrypt hash.
    """

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    # None only for admins (they see every division).
    division: Mapped[str | None] = mapped_column(String(64))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DashboardSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept, so
    sign-out (expiring the row) ends the session for good, unlike a bare signed cookie.
    An account's newest row outlives its session as the record of its last sign-in."""

    __tablename__ = "dashboard_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SignInFailure(Base):
    """One failed sign-in, under the account's and the client's key; counted to throttle."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AlertHandling(Base):
    """A division's record that it dealt with an alert; kept, never deleted."""

    __tablename__ = "alert_handling"

    alert_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    handled_by: Mapped[str] = mapped_column(String(254))
    handled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(Text, default="")
