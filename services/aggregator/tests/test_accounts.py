"""`python -m aggregator.accounts`: accounts a division can sign in with, passwords never stored."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from aggregator.accounts import main
from aggregator.models import Account

DIVISIONS = str(Path(__file__).parents[3] / "divisions.yaml")
PASSWORD = "a long enough secret"  # noqa: S105 (a test password)
OTHER_PASSWORD = "another long secret"  # noqa: S105


def accounts_cli(database_url: str, *args: str, password: str = PASSWORD):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOE_") and k != "DATABASE_URL"}
    env |= {"DATABASE_URL": database_url, "KOE_DIVISIONS_FILE": DIVISIONS}
    return subprocess.run(
        [sys.executable, "-m", "aggregator.accounts", *args],
        input=password + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_creates_division_and_admin_accounts_with_scrypt_hashes(migrated_url, sessions):
    made = accounts_cli(
        migrated_url, "create", "--email", "Clerk@Somu.example", "--division", "somu-dx"
    )
    assert made.returncode == 0, made.stderr
    assert "clerk@somu.example (division somu-dx)" in made.stdout
    assert (
        accounts_cli(migrated_url, "create", "--email", "boss@city.example", "--admin").returncode
        == 0
    )
    with sessions() as session:
        accounts = {a.email: a for a in session.scalars(select(Account))}
    clerk, boss = accounts["clerk@somu.example"], accounts["boss@city.example"]
    assert (clerk.division, clerk.is_admin) == ("somu-dx", False)
    assert (boss.division, boss.is_admin) == (None, True)
    assert clerk.password_hash.startswith("scrypt:") and PASSWORD not in clerk.password_hash

    changed = accounts_cli(
        migrated_url,
        "set-password",
        "--email",
        "clerk@somu.example",
        password=OTHER_PASSWORD,
    )
    assert changed.returncode == 0, changed.stderr
    with sessions() as session:
        assert (
            session.scalar(
                select(Account.password_hash).where(Account.email == "clerk@somu.example")
            )
            != clerk.password_hash
        )


def test_refuses_what_would_make_a_bad_account(migrated_url, sessions, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    monkeypatch.setenv("KOE_DIVISIONS_FILE", DIVISIONS)

    def run(*args: str, password: str = PASSWORD):
        # In-process (the entry point itself is run above): main() as the CLI calls it.
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        code = main(list(args))
        return code, capsys.readouterr().err

    cases = [
        (
            ("create", "--email", "a@x.example", "--division", "no-such-division"),
            "unknown division",
        ),
        (("create", "--email", "a@x.example", "--division", "somu-dx"), "at least 12"),
        (("create", "--email", "not-an-email", "--admin"), "not an email"),
        (("set-password", "--email", "nobody@x.example"), "no account"),
    ]
    for args, reason in cases:
        password = "short" if reason == "at least 12" else PASSWORD
        code, error = run(*args, password=password)
        assert code == 1 and reason in error, (args, error)
    assert run("create", "--email", "a@x.example", "--admin")[0] == 0
    code, error = run("create", "--email", "A@x.example", "--admin")
    assert code == 1 and "exists already" in error
    with sessions() as session:
        assert session.scalars(select(Account.email)).all() == ["a@x.example"]
