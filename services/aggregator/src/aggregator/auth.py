"""Dashboard sessions and sign-in throttling, kept in the database.

Both live in the database, not in a worker's memory: gunicorn runs several
workers (and compose several replicas), and a throttle per worker would let an
attacker multiply their attempts by the number of workers.

- A session is a random token in the (signed, HttpOnly) cookie and its SHA-256
  in `dashboard_sessions`; it ends at sign-out or after SESSION_LIFETIME.
- Failed sign-ins are counted per account and per client address over
  THROTTLE_WINDOW. Past either limit, sign-in answers 429 without checking the
  password, so guessing stops even for the right password. Per account stops a
  slow attack on one clerk from many addresses; per client stops one address
  trying many accounts. A success clears the account's count.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from aggregator.accounts import normalise_email
from aggregator.models import Account, DashboardSession, SignInFailure

SESSION_LIFETIME = timedelta(hours=12)  # one working day; then sign in again
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_CLIENT = 20


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; koe stores UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def start_session(session: Session, account: Account, now: datetime) -> str:
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at < now))
    token = secrets.token_urlsafe(32)
    session.add(
        DashboardSession(
            token_hash=_hash(token),
            account_id=account.id,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    return token


def end_session(session: Session, token: str) -> None:
    session.execute(delete(DashboardSession).where(DashboardSession.token_hash == _hash(token)))


def session_account(session: Session, token: str, now: datetime) -> Account | None:
    row = session.execute(
        select(Account, DashboardSession.expires_at)
        .join(DashboardSession, DashboardSession.account_id == Account.id)
        .where(DashboardSession.token_hash == _hash(token))
    ).first()
    if row is None or _aware(row.expires_at) <= now:
        return None
    return row.Account


def _keys(email: str, client: str) -> dict[str, int]:
    return {
        f"account:{normalise_email(email)}"[:300]: MAX_FAILURES_PER_ACCOUNT,
        f"client:{client}"[:300]: MAX_FAILURES_PER_CLIENT,
    }


def retry_after(session: Session, email: str, client: str, now: datetime) -> int | None:
    """Seconds until sign-in may be tried again, or None when it may be tried now."""
    since = now - THROTTLE_WINDOW
    waits = []
    for key, limit in _keys(email, client).items():
        count, oldest = session.execute(
            select(func.count(), func.min(SignInFailure.at)).where(
                SignInFailure.key == key, SignInFailure.at > since
            )
        ).one()
        if count >= limit:
            waits.append((_aware(oldest) + THROTTLE_WINDOW - now).total_seconds())
    return max(1, math.ceil(max(waits))) if waits else None


def record_failure(session: Session, email: str, client: str, now: datetime) -> None:
    session.execute(delete(SignInFailure).where(SignInFailure.at <= now - THROTTLE_WINDOW))
    session.add_all(SignInFailure(key=key, at=now) for key in _keys(email, client))


def clear_failures(session: Session, email: str) -> None:
    account_key = next(iter(_keys(email, "")))
    session.execute(delete(SignInFailure).where(SignInFailure.key == account_key))
