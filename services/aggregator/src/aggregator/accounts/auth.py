"""Dashboard sessions and sign-in throttling, kept in the database.

Both live in the database, not in a worker's memory: gunicorn runs several
workers (and compose several replicas), and a throttle per worker would let an
attacker multiply their attempts by the number of workers.

- A session is a random token in the (signed, HttpOnly) cookie and its SHA-256
  in `dashboard_sessions`; it ends at sign-out or after SESSION_LIFETIME. An
  ended session's row is kept, expired, while it is its account's newest: it is
  the record of the account's last sign-in (`accounts list`), never a way in.
- Failed sign-ins are counted over THROTTLE_WINDOW, and past a limit sign-in
  answers 429 without checking the password, so guessing stops even for the
  right password:
  - per client address, over every account (MAX_FAILURES_PER_CLIENT): one
    address trying many accounts;
  - per client address on one account (MAX_FAILURES_PER_CLIENT_ACCOUNT): one
    address guessing one clerk's password. Only that address waits;
  - per account, once failures came from ACCOUNT_LOCK_CLIENTS different
    addresses: a guess spread over many addresses. Everyone waits, the clerk
    too, which is why one address alone never causes it: a colleague who types
    someone else's email wrongly (or on purpose) blocks only their own address.
  A success clears that address's failures on the account.
  An address is kept only as a keyed hash (client_id): the throttle needs to
  tell addresses apart, not to know them. A failure is read for THROTTLE_WINDOW
  only; the next failure deletes older ones, and the consumer prunes them even
  when nobody fails again (pruning.SignInFailurePruner).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, aliased

from aggregator.accounts.models import Account, DashboardSession, SignInFailure

SESSION_LIFETIME = timedelta(hours=12)  # one working day; then sign in again
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_CLIENT = 20
MAX_FAILURES_PER_CLIENT_ACCOUNT = 5
ACCOUNT_LOCK_CLIENTS = 3
# Disabled accounts keep their hash behind this mark, as shadow(5) locks a password
# with "!": no scrypt hash starts with it, and enabling restores the hash unchanged.
DISABLED_MARK = "!"


def normalise_email(email: str) -> str:
    return email.strip().lower()


def is_disabled(account: Account) -> bool:
    return account.password_hash.startswith(DISABLED_MARK)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; koe stores UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def start_session(session: Session, account: Account, now: datetime) -> str:
    # Expired sessions go, except each account's newest: its last sign-in.
    newer = aliased(DashboardSession)
    session.execute(
        delete(DashboardSession)
        .where(DashboardSession.expires_at <= now)
        .where(
            select(newer.token_hash)
            .where(
                newer.account_id == DashboardSession.account_id,
                newer.created_at > DashboardSession.created_at,
            )
            .exists()
        )
    )
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


def end_session(session: Session, token: str, now: datetime) -> None:
    session.execute(
        update(DashboardSession)
        .where(DashboardSession.token_hash == _hash(token), DashboardSession.expires_at > now)
        .values(expires_at=now)
    )


def end_all_sessions(session: Session, account: Account, now: datetime) -> None:
    """Sign the account out in every browser (a new password, a disabled account)."""
    session.execute(
        update(DashboardSession)
        .where(DashboardSession.account_id == account.id, DashboardSession.expires_at > now)
        .values(expires_at=now)
    )


def last_sign_ins(session: Session) -> dict[int, datetime]:
    """account id → when it last signed in (its newest session row, kept after it ends)."""
    rows = session.execute(
        select(DashboardSession.account_id, func.max(DashboardSession.created_at)).group_by(
            DashboardSession.account_id
        )
    )
    return {account_id: aware(at) for account_id, at in rows}


def session_account(session: Session, token: str, now: datetime) -> Account | None:
    row = session.execute(
        select(Account, DashboardSession.expires_at)
        .join(DashboardSession, DashboardSession.account_id == Account.id)
        .where(DashboardSession.token_hash == _hash(token))
    ).first()
    # A disabled account's sessions were ended; checking again also closes a sign-in
    # that raced with `accounts disable`.
    if row is None or aware(row.expires_at) <= now or is_disabled(row.Account):
        return None
    return row.Account


def _account_prefix(email: str) -> str:
    # A digest: fixed length, so the prefix is unambiguous whatever the email holds,
    # and what someone typed as an email (a password, at times) is not kept.
    return f"account:{hashlib.sha256(normalise_email(email).encode()).hexdigest()}/"


def client_id(secret_key: str, address: str) -> str:
    """What the throttle keeps of a client's address: HMAC-SHA256 under the dashboard's
    secret key. Keyed, because every IPv4 address can be hashed in minutes: without the
    key, a copy of the database does not say who tried to sign in."""
    digest = hmac.new(secret_key.encode(), address.encode(), hashlib.sha256).hexdigest()
    return digest[:32]


def _client_key(client: str) -> str:
    return f"client:{client}"[:300]


def _pair_key(email: str, client: str) -> str:
    return f"{_account_prefix(email)}{client}"[:300]


def retry_after(session: Session, email: str, client: str, now: datetime) -> int | None:
    """Seconds until sign-in may be tried again, or None when it may be tried now."""
    since = now - THROTTLE_WINDOW
    waits = []
    for key, limit in (
        (_client_key(client), MAX_FAILURES_PER_CLIENT),
        (_pair_key(email, client), MAX_FAILURES_PER_CLIENT_ACCOUNT),
    ):
        count, oldest = session.execute(
            select(func.count(), func.min(SignInFailure.at)).where(
                SignInFailure.key == key, SignInFailure.at > since
            )
        ).one()
        if count >= limit:
            waits.append(aware(oldest) + THROTTLE_WINDOW - now)
    # The account stays locked while ACCOUNT_LOCK_CLIENTS addresses have a failure in the
    # window: until the window passes the latest failure of the one that made it so.
    lock_ends_with = session.scalar(
        select(func.max(SignInFailure.at))
        .where(SignInFailure.key.startswith(_account_prefix(email)), SignInFailure.at > since)
        .group_by(SignInFailure.key)
        .order_by(func.max(SignInFailure.at).desc())
        .offset(ACCOUNT_LOCK_CLIENTS - 1)
        .limit(1)
    )
    if lock_ends_with is not None:
        waits.append(aware(lock_ends_with) + THROTTLE_WINDOW - now)
    return max(1, math.ceil(max(waits).total_seconds())) if waits else None


def record_failure(session: Session, email: str, client: str, now: datetime) -> None:
    session.execute(delete(SignInFailure).where(SignInFailure.at <= now - THROTTLE_WINDOW))
    session.add_all(
        SignInFailure(key=key, at=now) for key in (_client_key(client), _pair_key(email, client))
    )


def clear_failures(session: Session, email: str, client: str) -> None:
    session.execute(delete(SignInFailure).where(SignInFailure.key == _pair_key(email, client)))
