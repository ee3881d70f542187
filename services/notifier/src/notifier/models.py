"""The notifier's own tables: which alerts were emailed, or gave up on; daily digests."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SENT = "sent"
FAILED = "failed"
# An attempt failed transiently (SMTP 4xx, server unreachable); the consumer retries.
RETRYING = "retrying"
FINAL = (SENT, FAILED)
# A digest claimed by a digest step that is sending it now (or crashed doing so).
SENDING = "sending"


class Base(DeclarativeBase):
    pass


class SentAlert(Base):
    """One row per alert id: the reason an alert is emailed once through redelivery."""

    __tablename__ = "sent_alerts"

    alert_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    division_code: Mapped[str] = mapped_column(String(64))
    recipients: Mapped[str] = mapped_column(Text)
    first_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)


class DigestEntry(Base):
    """An alert for a division with daily delivery, waiting for (or listed in) a digest.

    One row per alert id: stored once however often the alert is delivered, and
    listed in exactly one digest (digest_date is set when a digest claims it).
    """

    __tablename__ = "digest_entries"
    __table_args__ = (Index("ix_digest_entries_waiting", "division_code", "digest_date"),)

    alert_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    division_code: Mapped[str] = mapped_column(String(64))
    # The whole CloudEvent, so the digest is composed from what the alert said.
    event: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    digest_date: Mapped[date | None] = mapped_column(Date)


class Digest(Base):
    """One digest email per division and day; its row makes it go out once."""

    __tablename__ = "digests"

    division_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest_date: Mapped[date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    entries: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    recipients: Mapped[str] = mapped_column(Text)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
