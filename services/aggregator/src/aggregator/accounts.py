"""Dashboard accounts, and `python -m aggregator.accounts` that creates them.

    python -m aggregator.accounts create --email clerk@city.example --division somu-dx
    python -m aggregator.accounts create --email admin@city.example --admin
    python -m aggregator.accounts set-password --email clerk@city.example

The password is read from standard input when it is not a terminal (one line,
for scripts: `printf '%s\\n' "$PW" | python -m aggregator.accounts create ...`),
otherwise asked for twice without echo. It never appears on the command line,
where `ps` and shell history would show it.

Passwords are kept as werkzeug's scrypt hashes (memory-hard, salted, in the
standard library through hashlib, so no extra dependency; argon2 would need
argon2-cffi for no practical gain here).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from aggregator.config import load_settings
from aggregator.models import Account, DashboardSession
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


def normalise_email(email: str) -> str:
    return email.strip().lower()


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
    """Replace the password and end the account's dashboard sessions."""
    account = find_account(session, email)
    if account is None:
        raise AccountError(f"no account for {normalise_email(email)}")
    problem = password_problem(password)
    if problem:
        raise AccountError(problem)
    account.password_hash = generate_password_hash(password, HASH_METHOD)
    # A new password is often the answer to a leaked one: whoever signed in with the
    # old one is signed out everywhere.
    session.execute(delete(DashboardSession).where(DashboardSession.account_id == account.id))
    return account


def find_account(session: Session, email: str) -> Account | None:
    return session.scalar(
        select(Account).where(func.lower(Account.email) == normalise_email(email))
    )


def authenticate(session: Session, email: str, password: str) -> Account | None:
    account = find_account(session, email)
    stored = account.password_hash if account else _UNKNOWN_ACCOUNT_HASH
    if check_password_hash(stored, password) and account is not None:
        return account
    return None


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("the two passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aggregator.accounts", description="koe dashboard accounts"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create an account")
    create.add_argument("--email", required=True)
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--division", help="division code from divisions.yaml (or 'fallback')")
    who.add_argument("--admin", action="store_true", help="sees every division")
    change = commands.add_parser("set-password", help="replace an account's password")
    change.add_argument("--email", required=True)
    args = parser.parse_args(argv)

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
        password = _read_password()
        with transaction(session_factory(engine)) as session:
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
                print(f"koe: created {account.email} ({scope})")
            else:
                account = set_password(session, args.email, password)
                print(f"koe: password changed for {account.email}")
    except AccountError as exc:
        print(f"koe: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
