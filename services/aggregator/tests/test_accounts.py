"""`python -m aggregator.accounts`: accounts a division can sign in with, passwords never
stored; listed, disabled, enabled and deleted without losing who handled which alert."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from aggregator.accounts.cli import koe_home, main
from aggregator.accounts.models import Account, DashboardSession

DIVISIONS = str(Path(__file__).parents[3] / "divisions.yaml")
PASSWORD = "a long enough secret"  # noqa: S105 (a test password)
OTHER_PASSWORD = "another long secret"  # noqa: S105


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOE_") and k != "DATABASE_URL"}
    return env | {"DATABASE_URL": database_url, "KOE_DIVISIONS_FILE": DIVISIONS} | extra


def accounts_cli(database_url: str, *args: str, password: str = PASSWORD, **run):
    return subprocess.run(
        [sys.executable, "-m", "aggregator.accounts", *args],
        input=password + "\n",
        env=run.pop("env", None) or cli_env(database_url, KOE_LANGUAGE="en"),
        capture_output=True,
        text=True,
        timeout=60,
        **run,
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


@pytest.fixture
def cli(migrated_url, monkeypatch, capsys):
    """run(*args, password=...) -> (exit code, stdout, stderr): main() as the CLI calls it,
    in-process (the entry point itself is run above)."""
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    monkeypatch.setenv("KOE_DIVISIONS_FILE", DIVISIONS)
    monkeypatch.setenv("KOE_LANGUAGE", "en")  # the words these tests read; Japanese below

    def run(*args: str, password: str = PASSWORD):
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_refuses_what_would_make_a_bad_account(cli, sessions):
    def run(*args: str, password: str = PASSWORD):
        code, _out, err = cli(*args, password=password)
        return code, err

    cases = [
        (
            ("create", "--email", "a@x.example", "--division", "no-such-division"),
            "unknown division",
        ),
        (("create", "--email", "a@x.example", "--division", "somu-dx"), "at least 12"),
        (("create", "--email", "not-an-email", "--admin"), "not an email"),
        (("set-password", "--email", "nobody@x.example"), "no account"),
        (("disable", "--email", "nobody@x.example"), "no account"),
        (("enable", "--email", "nobody@x.example"), "no account"),
        (("delete", "--email", "nobody@x.example"), "no account"),
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


# -- list, disable, enable, delete: with the dashboard over the same database ------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(app, email: str, password: str, address: str = "192.0.2.10"):
    """(client, response) after posting the sign-in form from `address`."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    token = CSRF.search(client.get("/sign-in").get_data(as_text=True)).group(1)
    response = client.post(
        "/sign-in", data={"email": email, "password": password, "csrf_token": token}
    )
    return client, response


def sign_in_error(response) -> str:
    return re.search(r'<p class="error".*?</p>', response.get_data(as_text=True), re.S).group(0)


def listing(cli) -> dict[str, dict[str, str]]:
    """`accounts list` as email → its columns, read from the header's column names."""
    code, out, err = cli("list")
    assert code == 0, err
    header, *rows = out.splitlines()
    names = re.split(r"\s{2,}", header.strip())
    assert names == ["email", "scope", "created", "last sign-in", "status"]
    table = {}
    for row in rows:
        cells = dict(zip(names, re.split(r"\s{2,}", row.strip()), strict=True))
        table[cells["email"]] = cells
    return table


def test_list_shows_scope_creation_last_sign_in_and_status(cli, city_app, sessions):
    app, city = city_app
    today = datetime.now(app.extensions["aggregator.settings"].timezone).date().isoformat()
    before = listing(cli)
    assert sorted(before) == sorted([city.admin, city.somu, city.kankyo])
    assert before[city.somu]["scope"] == "somu-dx" and before[city.admin]["scope"] == "admin"
    assert before[city.somu]["created"].startswith(today)
    assert before[city.somu]["created"].endswith("+09:00")  # the city's time
    assert {row["last sign-in"] for row in before.values()} == {"-"}
    assert {row["status"] for row in before.values()} == {"active"}

    for _ in range(3):
        somu, response = sign_in(app, city.somu, city.password)
        assert response.status_code == 303
        token = CSRF.search(somu.get("/pages").get_data(as_text=True)).group(1)
        assert somu.post("/sign-out", data={"csrf_token": token}).status_code == 303
    assert cli("disable", "--email", city.kankyo)[0] == 0
    after = listing(cli)
    # Signing out ends the session, not the record of the sign-in.
    assert after[city.somu]["last sign-in"].startswith(today)
    with sessions() as session:
        kept = session.scalars(
            select(DashboardSession.created_at)
            .join(Account, Account.id == DashboardSession.account_id)
            .where(Account.email == city.somu)
        ).all()
    # Ended sessions do not pile up: a new sign-in clears all but the newest ended one.
    assert len(kept) == 2
    assert after[city.admin]["last sign-in"] == "-"
    assert after[city.kankyo]["status"] == "disabled"
    assert after[city.somu]["status"] == after[city.admin]["status"] == "active"


def test_disable_signs_out_everywhere_and_refuses_like_a_wrong_password(cli, city_app):
    app, city = city_app
    desk, _ = sign_in(app, city.somu, city.password, "192.0.2.10")
    phone, _ = sign_in(app, city.somu, city.password, "198.51.100.7")
    assert desk.get("/pages").status_code == phone.get("/pages").status_code == 200

    code, out, _err = cli("disable", "--email", "Clerk@Somu.example")
    assert code == 0 and f"disabled {city.somu}" in out
    assert desk.get("/pages").status_code == phone.get("/pages").status_code == 302
    _, refused = sign_in(app, city.somu, city.password, "203.0.113.1")
    _, wrong = sign_in(app, city.kankyo, "not the password", "203.0.113.2")
    assert refused.status_code == wrong.status_code == 401
    # Nothing tells a disabled account from a wrong password.
    assert sign_in_error(refused) == sign_in_error(wrong)
    assert "メールアドレスまたはパスワードが違います" in sign_in_error(refused)

    # A new password does not enable it again.
    code, out, _err = cli("set-password", "--email", city.somu, password=OTHER_PASSWORD)
    assert code == 0 and "stays disabled" in out
    assert sign_in(app, city.somu, OTHER_PASSWORD, "203.0.113.3")[1].status_code == 401
    assert cli("disable", "--email", city.somu)[1] == f"koe: {city.somu} was disabled already\n"

    code, out, _err = cli("enable", "--email", city.somu)
    assert code == 0 and f"enabled {city.somu}" in out
    assert sign_in(app, city.somu, OTHER_PASSWORD, "203.0.113.4")[1].status_code == 303
    assert cli("enable", "--email", city.somu)[1] == f"koe: {city.somu} was not disabled\n"


def test_delete_keeps_who_handled_an_alert_readable(cli, city_app, sessions):
    app, city = city_app
    somu, _ = sign_in(app, city.somu, city.password)
    token = CSRF.search(somu.get("/alerts").get_data(as_text=True)).group(1)
    handled = somu.post(
        f"/alerts/{city.dx_alert}/handled", data={"csrf_token": token, "note": "直しました"}
    )
    assert handled.status_code == 303

    code, out, err = cli("delete", "--email", city.somu)
    assert code == 0, err
    assert f"deleted {city.somu} (1 handled alerts keep its email)" in out
    assert city.somu not in listing(cli)
    assert somu.get("/pages").status_code == 302  # its session went with it
    assert sign_in(app, city.somu, city.password)[1].status_code == 401
    with sessions() as session:
        assert session.scalar(select(Account).where(Account.email == city.somu)) is None

    admin, _ = sign_in(app, city.admin, city.password)
    record = admin.get("/alerts?show=handled").get_data(as_text=True)
    assert f"対応済み ({city.somu}、" in record and "直しました" in record
    # The email can be given to a new account (a successor in the same post).
    assert cli("create", "--email", city.somu, "--division", "somu-dx")[0] == 0


# -- Japanese first, from any directory, a mistyped confirmation asked again (issue 15) ------


def test_speaks_japanese_unless_english_is_asked_for(migrated_url):
    made = accounts_cli(
        migrated_url,
        *("create", "--email", "clerk@somu.example", "--division", "somu-dx"),
        env=cli_env(migrated_url),
    )
    assert made.stdout == "koe: clerk@somu.example を作成しました (課 somu-dx)\n", made.stderr
    again = accounts_cli(
        migrated_url,
        "create",
        "--email",
        "clerk@somu.example",
        "--admin",
        env=cli_env(migrated_url),
    )
    assert again.returncode == 1
    assert again.stderr == (
        "koe: clerk@somu.example のアカウントはすでにあります (変更は set-password で)\n"
    )
    english = accounts_cli(
        migrated_url, "--lang", "en", "disable", "--email", "clerk@somu.example",
        env=cli_env(migrated_url),
    )  # fmt: skip
    assert english.stdout == "koe: disabled clerk@somu.example\n"


def test_runs_from_any_directory(migrated_url, sessions, tmp_path):
    # Not from the checkout's root, and no KOE_DIVISIONS_FILE: the checkout's is found.
    env = cli_env(migrated_url)
    del env["KOE_DIVISIONS_FILE"]
    made = accounts_cli(
        migrated_url,
        *("create", "--email", "clerk@somu.example", "--division", "somu-dx"),
        env=env,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert f"{Path(DIVISIONS).parent} の divisions.yaml と var/ を使います" in made.stderr
    with sessions() as session:
        assert session.scalars(select(Account.division)).all() == ["somu-dx"]
    # Where relative paths are read from: KOE_HOME, else here if divisions.yaml is here.
    checkout = Path(DIVISIONS).parent
    assert koe_home(tmp_path, "") == checkout
    assert koe_home(tmp_path, "/srv/koe") == Path("/srv/koe")
    (tmp_path / "divisions.yaml").write_text("divisions: []\n", encoding="utf-8")
    assert koe_home(tmp_path, "") == tmp_path


def _at_a_terminal(argv: list[str], env: dict[str, str], answers: list[tuple[str, str]]):
    """Run argv on a pseudo-terminal (getpass reads /dev/tty), typing each answer only once
    its prompt shows after the last one answered (getpass discards input typed ahead);
    (exit status, everything the terminal showed). Never waits more than 30 s for output:
    a missing prompt fails the test and ends the child instead of hanging the run."""
    import pty
    import select
    import signal

    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, with the pty as its terminal
        os.execve(sys.executable, [sys.executable, *argv], env)  # noqa: S606 (our own interpreter)
    shown = b""

    def read_more() -> bool:
        """More output (False at the end); fails after 30 s without any."""
        nonlocal shown
        ready, _, _ = select.select([fd], [], [], 30)
        assert ready, f"stuck after: {shown.decode(errors='replace')}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child has closed the terminal
            return False
        shown += chunk
        return bool(chunk)

    try:
        answered = 0  # where the output not yet matched to a prompt starts
        for prompt, answer in answers:
            while (at := shown.find(prompt.encode(), answered)) < 0:
                assert read_more(), f"ended before {prompt!r}: {shown.decode(errors='replace')}"
            answered = at + len(prompt.encode())
            os.write(fd, answer.encode() + b"\n")
        while read_more():
            pass
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_a_mistyped_confirmation_is_asked_again(migrated_url, sessions):
    argv = ["-m", "aggregator.accounts", "create", "--email", "a@x.example", "--admin"]
    code, shown = _at_a_terminal(
        argv,
        cli_env(migrated_url),
        [
            ("パスワード: ", PASSWORD),
            ("確認のため、もう一度: ", PASSWORD + "x"),  # a slip of the finger
            ("パスワード: ", "short"),
            ("確認のため、もう一度: ", "short"),
            ("パスワード: ", PASSWORD),
            ("確認のため、もう一度: ", PASSWORD),
        ],
    )
    assert code == 0, shown
    assert "2回の入力が一致しません。もう一度入力してください。" in shown
    assert "パスワードは12文字以上にしてください" in shown
    assert "koe: a@x.example を作成しました (管理者)" in shown
    assert PASSWORD not in shown  # never echoed
    with sessions() as session:
        assert session.scalars(select(Account.email)).all() == ["a@x.example"]
