"""The feedback service's own tables: survey responses, spent proofs of work and the
transactional outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Response(Base):
    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    page_id: Mapped[str] = mapped_column(String(128))
    page_url: Mapped[str] = mapped_column(String(2048))
    page_title: Mapped[str | None] = mapped_column(String(200))
    division: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(8))
    findability: Mapped[str | None] = mapped_column(String(8))
    clarity: Mapped[str | None] = mapped_column(String(8))
    usefulness: Mapped[str | None] = mapped_column(String(8))
    client_token: Mapped[str | None] = mapped_column(String(36))
    # The same client's earlier response to the same page that this one replaces.
    replaces: Mapped[str | None] = mapped_column(String(36))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    # Unique so a retried submission (same token) can never become two responses.
    __table_args__ = (UniqueConstraint("client_token", name="uq_responses_client_token"),)


class ClientGuard(Base):
    """Per client (keyed hash, see clients.py) and page: the rate-limit window and
    the last response, so a second response within the replacement window replaces it.

    In the database rather than in a worker's memory, so every gunicorn worker and
    replica sees the same client; one upsert per accepted response, in its transaction.
    """

    __tablename__ = "client_guard"

    client_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_response_id: Mapped[str] = mapped_column(String(36))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_count: Mapped[int] = mapped_column(Integer)
    # Written by the upsert itself: the response it displaced, if any. RETURNING shows
    # only new values, and this keeps the read and the write one atomic statement.
    replaced_id: Mapped[str | None] = mapped_column(String(36))


class UsedChallenge(Base):
    """Proof-of-work solutions already spent (challenges.py): each buys one response.

    Kept until the challenge expires; after that check() refuses it on its own.
    """

    __tablename__ = "used_challenges"

    # koe's HMAC over the challenge: one per challenge issued.
    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OutboxEntry(Base):
    __tablename__ = "outbox"

    # Autoincrement id is the publish order: the relay reads rows by id.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36))
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # The relay only ever scans unsent rows; a partial index keeps that cheap
        # however many sent rows are kept for KOE_OUTBOX_KEEP_HOURS.
        Index(
            "ix_outbox_unsent",
            "id",
            postgresql_where=text("sent_at IS NULL"),
            sqlite_where=text("sent_at IS NULL"),
        ),
        Index("ix_outbox_sent_at", "sent_at"),
        # A relay checks that no other relay holds an older unsent row of its keys.
        Index(
            "ix_outbox_unsent_key",
            "key",
            "id",
            postgresql_where=text("sent_at IS NULL"),
            sqlite_where=text("sent_at IS NULL"),
        ),
    )
