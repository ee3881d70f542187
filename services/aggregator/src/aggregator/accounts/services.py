"""Dashboard accounts, and `python -m aggregator.accounts` that keeps them.

    python -m aggregator.accounts create --email clerk@city.example --division somu-dx
    python -m aggregator.accounts create --email admin@city.example --admin
    python -m aggregator.accounts set-password --email clerk@city.example
    python -m aggregator.accounts list
    python -m aggregator.accounts disable --email clerk@city.example
    python -m aggregator.accounts enable --email clerk@city.example
    python -m aggregator.accounts delete --email clerk@city.example

The password is read from standard input when it is not a terminal (one line,
for scripts: `printf '%s\\n' "$PW" | python -m aggregator.accounts create ...`),
otherwise asked for twice without echo. It never appears on the command line,
where `ps` and shell history would show it.

Passwords are kept as werkzeug's scrypt hashes (memory-hard, salted, in the
standard library through hashlib, so no extra dependency; argon2 would need
argon2-cffi for no practical gain here).

`disable` is for someone who left or a password that may have leaked: the
account is signed out everywhere and sign-in is refused with the words of a
wrong password, and `enable` gives it back as it was. `delete` removes it; the
alerts it marked handled keep its email as written (alert_handling.handled_by
is text, not a reference), so the record of who did what stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from aggregator.accounts.auth import (
    DISABLED_MARK,
    aware,
    end_all_sessions,
    is_disabled,
    last_sign_ins,
    normalise_email,
)
from aggregator.accounts.models import Account
from aggregator.accounts.words import say
from aggregator.alerts.models import AlertHandling
from koe_directory import Directory

MIN_PASSWORD_LENGTH = 12
HASH_METHOD = "scrypt"
# Checked against when the email is unknown, so a wrong email costs as long as a wrong
# password and the timing does not tell which accounts exist.
_UNKNOWN_ACCOUNT_HASH = generate_password_hash("no account has this password", HASH_METHOD)


class AccountError(ValueError):
    """The account cannot be created or changed: `reason` says why (a key of
    account_words, with its values), in English as the message."""

    def __init__(self, reason: str, **values: object) -> None:
        super().__init__(say("en", f"error.{reason}", **values))
        self.reason = reason
        self.values = values

    def words(self, lang: str) -> str:
        return say(lang, f"error.{self.reason}", **self.values)


@dataclass(frozen=True)
class AccountSummary:
    email: str
    scope: str  # "admin" or the division's code
    created_at: datetime
    last_sign_in: datetime | None
    disabled: bool


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError("short_password", length=MIN_PASSWORD_LENGTH)


def create_account(
    session: Session,
    directory: Directory,
    *,
    email: str,
    password: str,
    division: str | None = None,
    admin: bool = False,
) -> Account:
    email = normalise_email(email)
    if "@" not in email or len(email) > 254:
        raise AccountError("not_email", email=email)
    if admin == (division is not None):
        raise AccountError("who")
    fallback = directory.fallback.code
    if division is not None and division != fallback and not directory.knows(division):
        known = ", ".join(sorted(directory.divisions))
        raise AccountError("unknown_division", division=division, known=known)
    check_password(password)
    if find_account(session, email) is not None:
        raise AccountError("exists", email=email)
    account = Account(
        email=email,
        password_hash=generate_password_hash(password, HASH_METHOD),
        division=division,
        is_admin=admin,
        created_at=datetime.now(UTC),
    )
    session.add(account)
    session.flush()
    return account


def set_password(session: Session, email: str, password: str) -> Account:
    """Replace the password and end the account's dashboard sessions; a disabled
    account stays disabled."""
    account = existing_account(session, email)
    check_password(password)
    mark = DISABLED_MARK if is_disabled(account) else ""
    account.password_hash = mark + generate_password_hash(password, HASH_METHOD)
    # A new password is often the answer to a leaked one: whoever signed in with the
    # old one is signed out everywhere.
    end_all_sessions(session, account, datetime.now(UTC))
    return account


def disable_account(session: Session, email: str) -> bool:
    """Refuse the account's sign-ins and end its sessions; False if it was disabled."""
    account = existing_account(session, email)
    end_all_sessions(session, account, datetime.now(UTC))
    if is_disabled(account):
        return False
    account.password_hash = DISABLED_MARK + account.password_hash
    return True


def enable_account(session: Session, email: str) -> bool:
    """Let the account sign in again with its password; False if it was not disabled."""
    account = existing_account(session, email)
    if not is_disabled(account):
        return False
    account.password_hash = account.password_hash.removeprefix(DISABLED_MARK)
    return True


def delete_account(session: Session, email: str) -> int:
    """Remove the account (its sessions go with it); returns how many alerts it marked
    handled, whose records keep its email."""
    account = existing_account(session, email)
    handled = session.scalar(select(func.count()).where(AlertHandling.handled_by == account.email))
    session.delete(account)  # dashboard_sessions: ON DELETE CASCADE
    session.flush()
    return handled or 0


def list_accounts(session: Session) -> list[AccountSummary]:
    signed_in = last_sign_ins(session)
    return [
        AccountSummary(
            email=account.email,
            scope="admin" if account.is_admin else str(account.division),
            created_at=aware(account.created_at),
            last_sign_in=signed_in.get(account.id),
            disabled=is_disabled(account),
        )
        for account in session.scalars(select(Account).order_by(Account.email))
    ]


def find_account(session: Session, email: str) -> Account | None:
    return session.scalar(
        select(Account).where(func.lower(Account.email) == normalise_email(email))
    )


def existing_account(session: Session, email: str) -> Account:
    account = find_account(session, email)
    if account is None:
        raise AccountError("no_account", email=normalise_email(email))
    return account


def authenticate(session: Session, email: str, password: str) -> Account | None:
    """The account, if the password is its own and it is not disabled. A disabled
    account's hash is still checked, so refusing it takes as long as a wrong password."""
    account = find_account(session, email)
    stored = account.password_hash.removeprefix(DISABLED_MARK) if account else None
    if check_password_hash(stored or _UNKNOWN_ACCOUNT_HASH, password) and account is not None:
        return None if is_disabled(account) else account
    return None
