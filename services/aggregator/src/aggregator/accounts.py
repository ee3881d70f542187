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

import argparse
import getpass
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from aggregator.auth import (
    DISABLED_MARK,
    aware,
    end_all_sessions,
    is_disabled,
    last_sign_ins,
    normalise_email,
)
from aggregator.config import load_settings
from aggregator.models import Account, AlertHandling
from koe_directory import Directory, DirectoryError, load_directory
from koe_kit.config import ConfigError, exit_on_config_error
from koe_kit.db import make_engine, session_factory, transaction

MIN_PASSWORD_LENGTH = 12
HASH_METHOD = "scrypt"
# Checked against when the email is unknown, so a wrong email costs as long as a wrong
# password and the timing does not tell which accounts exist.
_UNKNOWN_ACCOUNT_HASH = generate_password_hash("no account has this password", HASH_METHOD)


class AccountError(ValueError):
    """The account cannot be created or changed; the message says why."""


@dataclass(frozen=True)
class AccountSummary:
    email: str
    scope: str  # "admin" or the division's code
    created_at: datetime
    last_sign_in: datetime | None
    disabled: bool


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password needs at least {MIN_PASSWORD_LENGTH} characters"
    return None


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
        raise AccountError(f"{email!r} is not an email address")
    if admin == (division is not None):
        raise AccountError("give either --division CODE or --admin")
    fallback = directory.fallback.code
    if division is not None and division != fallback and not directory.knows(division):
        known = ", ".join(sorted(directory.divisions))
        raise AccountError(f"unknown division {division!r} (divisions.yaml has: {known})")
    problem = password_problem(password)
    if problem:
        raise AccountError(problem)
    if find_account(session, email) is not None:
        raise AccountError(f"an account for {email} exists already (use set-password)")
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
    problem = password_problem(password)
    if problem:
        raise AccountError(problem)
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
        raise AccountError(f"no account for {normalise_email(email)}")
    return account


def authenticate(session: Session, email: str, password: str) -> Account | None:
    """The account, if the password is its own and it is not disabled. A disabled
    account's hash is still checked, so refusing it takes as long as a wrong password."""
    account = find_account(session, email)
    stored = account.password_hash.removeprefix(DISABLED_MARK) if account else None
    if check_password_hash(stored or _UNKNOWN_ACCOUNT_HASH, password) and account is not None:
        return None if is_disabled(account) else account
    return None


def format_accounts(accounts: Sequence[AccountSummary], zone: ZoneInfo) -> str:
    """An aligned table with a header line; times in the city's zone, with the offset."""

    def when(moment: datetime | None) -> str:
        return moment.astimezone(zone).isoformat(timespec="minutes") if moment else "-"

    rows = [("email", "scope", "created", "last sign-in", "status")] + [
        (
            a.email,
            a.scope,
            when(a.created_at),
            when(a.last_sign_in),
            "disabled" if a.disabled else "active",
        )
        for a in accounts
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("the two passwords differ")
    return first


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aggregator.accounts", description="koe dashboard accounts"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create an account")
    create.add_argument("--email", required=True)
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--division", help="division code from divisions.yaml (or 'fallback')")
    who.add_argument("--admin", action="store_true", help="sees every division")
    commands.add_parser("list", help="every account: scope, created, last sign-in, status")
    for name, text in [
        ("set-password", "replace an account's password (signs it out everywhere)"),
        ("disable", "refuse an account's sign-ins and sign it out everywhere"),
        ("enable", "let a disabled account sign in again"),
        ("delete", "remove an account (alerts it handled keep its email)"),
    ]:
        commands.add_parser(name, help=text).add_argument("--email", required=True)
    return parser


def _run(
    session: Session,
    directory: Directory,
    args: argparse.Namespace,
    password: str,
    zone: ZoneInfo,
) -> str:
    """Carry out one command; returns what to print."""
    if args.command == "list":
        return format_accounts(list_accounts(session), zone)
    if args.command == "create":
        account = create_account(
            session,
            directory,
            email=args.email,
            password=password,
            division=args.division,
            admin=args.admin,
        )
        scope = "admin" if account.is_admin else f"division {account.division}"
        return f"koe: created {account.email} ({scope})"
    if args.command == "set-password":
        account = set_password(session, args.email, password)
        still = " (the account stays disabled)" if is_disabled(account) else ""
        return f"koe: password changed for {account.email}{still}"
    email = normalise_email(args.email)
    if args.command == "disable":
        changed = disable_account(session, email)
        return f"koe: disabled {email}" if changed else f"koe: {email} was disabled already"
    if args.command == "enable":
        changed = enable_account(session, email)
        return f"koe: enabled {email}" if changed else f"koe: {email} was not disabled"
    handled = delete_account(session, email)
    return f"koe: deleted {email} ({handled} handled alerts keep its email)"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        directory = load_directory(settings.divisions_file)
    except ConfigError as exc:
        exit_on_config_error(exc)
    except DirectoryError as exc:
        print(f"koe: cannot read divisions: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        # Asked before the transaction: nothing waits on the database while someone types.
        password = _read_password() if args.command in ("create", "set-password") else ""
        with transaction(session_factory(engine)) as session:
            print(_run(session, directory, args, password, settings.timezone))
    except AccountError as exc:
        print(f"koe: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
