"""The feedback service's own tables: survey responses, the transactional outbox, and what
guards the door: daily source keys, page views' tokens, budgets, known pages and spent
proofs of work."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, Index, Integer, String, Text, text
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
    locale: Mapped[str] = mapped_column(String(16))  # a BCP 47 tag: ja-x-easy, zh-Hans
    # The page's last-modified date as its snippet printed it (migration 0007): the
    # aggregator notices edits from it.
    page_modified: Mapped[date | None] = mapped_column(Date)
    findability: Mapped[str | None] = mapped_column(String(8))
    clarity: Mapped[str | None] = mapped_column(String(8))
    usefulness: Mapped[str | None] = mapped_column(String(8))
    # One page view: a change of mind keeps the token, so it is not unique here
    # (answer_tokens holds one row per token).
    client_token: Mapped[str | None] = mapped_column(String(36))
    # The same page view's earlier response that this one replaces.
    replaces: Mapped[str | None] = mapped_column(String(36))
    # sources.py: a keyed hash of the sender's network, never the address.
    source: Mapped[str | None] = mapped_column(String(32))
    # Indexed for retention (KOE_RESPONSE_KEEP_DAYS), which deletes the oldest first.
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class SourceKey(Base):
    """The random key of one city-local day that sources are hashed with (sources.py).

    In the database so that every gunicorn worker and replica hashes an address to the
    same source all day; pruned after KOE_SOURCE_KEY_KEEP_DAYS, after which nobody,
    koe included, can tell which address a source was.
    """

    __tablename__ = "source_keys"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AnswerToken(Base):
    """One page view's answers (its client_token): a second POST with the token and other
    answers within the window is that person's change of mind and replaces the response."""

    __tablename__ = "answer_tokens"

    client_token: Mapped[str] = mapped_column(String(36), primary_key=True)
    page_id: Mapped[str] = mapped_column(String(128))
    # The token's latest response: the one a change of mind replaces.
    response_id: Mapped[str] = mapped_column(String(36))
    # tokens.canonical_answers: equal strings are a retry, not a change of mind.
    answers: Mapped[str] = mapped_column(String(200))
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Budget(Base):
    """How many answers one source has spent in one scope (budgets.py) until ends_at."""

    __tablename__ = "budgets"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    # "page:<page_id>", "pages", "form-page:<page_id>", "form-pages" or "new-pages".
    scope: Mapped[str] = mapped_column(String(160), primary_key=True)
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    count: Mapped[int] = mapped_column(Integer)


class KnownPage(Base):
    """A page's fixed identity: its URL from its first accepted answer, never changed by
    a POST (pages.py)."""

    __tablename__ = "known_pages"

    page_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


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
