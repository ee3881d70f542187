"""`python -m aggregator.accounts`: create, list, disable, enable and delete dashboard
accounts (the commands are in accounts/services.py's docstring).

It speaks Japanese; `--lang en` or KOE_LANGUAGE=en makes it English. It runs from any
directory: relative paths (divisions.yaml, the SQLite files under var/) are read from
KOE_HOME, else the current directory if it holds divisions.yaml, else the koe checkout
this code runs from. At a terminal a password is asked for twice and asked again when
the two differ or it is too short, up to three times, instead of ending the run.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from aggregator.accounts.services import (
    AccountError,
    AccountSummary,
    check_password,
    create_account,
    delete_account,
    disable_account,
    enable_account,
    is_disabled,
    list_accounts,
    normalise_email,
    set_password,
)
from aggregator.accounts.words import LANGUAGES, say
from aggregator.config import load_settings, read_accounts_cli_settings
from koe_directory import Directory, DirectoryError, load_directory
from koe_kit.config import ConfigError, exit_on_config_error, load_or_exit
from koe_kit.db import make_engine, session_factory, transaction

TRIES = 3
DIVISIONS_FILE = "divisions.yaml"


def koe_home(cwd: Path, home: str, code: Path = Path(__file__)) -> Path:
    """Where relative paths are read from: `home` (KOE_HOME) if set; the current directory
    if it holds divisions.yaml; the nearest folder above this code that does (a checkout's
    root); else the current directory, and the missing file is then reported by name."""
    if home:
        return Path(home)
    if (cwd / DIVISIONS_FILE).is_file():
        return cwd
    return next(
        (folder for folder in code.resolve().parents if (folder / DIVISIONS_FILE).is_file()),
        cwd,
    )


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


def read_password(
    lang: str,
    *,
    terminal: bool,
    ask: Callable[[str], str] = getpass.getpass,
    tell: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> str:
    """One line of standard input for scripts; at a terminal, twice without echo, asked
    again (up to TRIES times) when the two differ or the password is too short."""
    if not terminal:
        return sys.stdin.readline().rstrip("\r\n")
    for _try in range(TRIES):
        first = ask(say(lang, "prompt.password"))
        if ask(say(lang, "prompt.again")) != first:
            tell(say(lang, "prompt.differ"))
            continue
        try:
            check_password(first)
        except AccountError as exc:
            tell(exc.words(lang))
            continue
        return first
    raise AccountError("gave_up", tries=TRIES)


def _parser(language: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aggregator.accounts", description="koe dashboard accounts"
    )
    parser.add_argument(
        "--lang",
        choices=LANGUAGES,
        default=language,
        help="the language of prompts and messages (default: KOE_LANGUAGE, else ja)",
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
    lang = args.lang
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
        scope = (
            say(lang, "scope.admin")
            if account.is_admin
            else say(lang, "scope.division", code=account.division)
        )
        return say(lang, "created", email=account.email, scope=scope)
    if args.command == "set-password":
        account = set_password(session, args.email, password)
        still = say(lang, "still_disabled") if is_disabled(account) else ""
        return say(lang, "password_changed", email=account.email) + still
    email = normalise_email(args.email)
    if args.command == "disable":
        changed = disable_account(session, email)
        return say(lang, "disabled" if changed else "disabled_already", email=email)
    if args.command == "enable":
        changed = enable_account(session, email)
        return say(lang, "enabled" if changed else "not_disabled", email=email)
    handled = delete_account(session, email)
    return say(lang, "deleted", email=email, handled=handled)


def main(argv: list[str] | None = None) -> int:
    start = load_or_exit(read_accounts_cli_settings)
    args = _parser(start.language).parse_args(argv)
    home = koe_home(Path.cwd(), start.home)
    if home.resolve() != Path.cwd().resolve():
        # The services' relative defaults (divisions.yaml, sqlite:///var/...) mean the
        # checkout's files, wherever the operator's shell happens to be.
        print(f"koe: {say(args.lang, 'home', home=home)}", file=sys.stderr)
        os.chdir(home)
    try:
        settings = load_settings()
        directory = load_directory(settings.divisions_file)
    except ConfigError as exc:
        exit_on_config_error(exc)
    except DirectoryError as exc:
        print(f"koe: {say(args.lang, 'no_divisions', error=exc)}", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        # Asked before the transaction: nothing waits on the database while someone types.
        needs_password = args.command in ("create", "set-password")
        password = read_password(args.lang, terminal=sys.stdin.isatty()) if needs_password else ""
        with transaction(session_factory(engine)) as session:
            said = _run(session, directory, args, password, settings.timezone)
        # The list is a table for reading and scripts; every other outcome is a sentence.
        print(said if args.command == "list" else f"koe: {said}")
    except AccountError as exc:
        print(f"koe: {exc.words(args.lang)}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        error = str(exc.orig or exc).splitlines()[0][:200]
        print(f"koe: {say(args.lang, 'no_database', error=error)}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0
