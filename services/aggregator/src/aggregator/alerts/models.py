"""Detector state, the alert outbox and the divisions' handling of alerts."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from aggregator.db import UPDATED_IN_PLACE, Base


class DetectorState(Base):
    """The drop detector's state per page and question (detector.State), kept between
    the days it judges (alerts/judging.py, migration 0009)."""

    __tablename__ = "detector_state"
    __table_args__ = UPDATED_IN_PLACE

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


class AlertHandling(Base):
    """A division's record that it dealt with an alert; kept, never deleted."""

    __tablename__ = "alert_handling"

    alert_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    handled_by: Mapped[str] = mapped_column(String(254))
    handled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(Text, default="")
