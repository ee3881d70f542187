"""Dashboard accounts, their sessions and sign-in throttling."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aggregator.db import Base

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
