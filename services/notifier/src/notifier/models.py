"""The notifier's own tables: which alerts were emailed, or gave up on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SENT = "sent"
FAILED = "failed"
# An attempt failed transiently (SMTP 4xx, server unreachable); the consumer retries.
RETRYING = "retrying"
FINAL = (SENT, FAILED)


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
