"""The rule that gives each test its kind (tests/kinds.py), and the guard that keeps
unit tests off the network and subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from kinds import KindError, UnitTestDidIO, kind_of, unit_guard


@pytest.mark.parametrize(
    ("fixtures", "marked", "kind"),
    [
        (["tmp_path", "monkeypatch"], [], "unit"),
        (["database_url", "tmp_path"], [], "integration"),
        (["smtp_server"], [], "integration"),
        (["broker", "smtp_server", "new_pg_database", "koe_factory"], [], "e2e"),
        (["koe_factory", "chromium"], ["e2e"], "browser"),
        (["pg_server_url"], ["e2e"], "e2e"),
        (["tmp_path"], ["integration"], "integration"),
    ],
)
def test_a_test_is_of_the_highest_kind_its_parts_need(fixtures, marked, kind):
    assert kind_of(fixtures, marked) == kind


def test_a_test_marked_unit_that_uses_a_real_part_is_refused_naming_it():
    with pytest.raises(KindError, match="marked unit but uses broker"):
        kind_of(["broker", "tmp_path"], ["unit"])


def test_the_guard_refuses_tcp_and_subprocesses_but_not_unix_sockets(tmp_path):
    with unit_guard():
        with socket.socket() as tcp, pytest.raises(UnitTestDidIO, match="integration"):
            tcp.connect(("127.0.0.1", 9))
        with socket.socket() as tcp, pytest.raises(UnitTestDidIO):
            tcp.bind(("127.0.0.1", 0))
        with pytest.raises(UnitTestDidIO, match="Popen"):
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        with socket.socket(socket.AF_UNIX) as unix:
            unix.bind(str(tmp_path / "s"))


def test_the_guard_leaves_other_threads_alone():
    refused: list[Exception] = []

    def connect() -> None:
        with socket.socket() as tcp:
            try:
                tcp.connect_ex(("127.0.0.1", 9))
            except UnitTestDidIO as exc:
                refused.append(exc)

    with unit_guard():
        thread = threading.Thread(target=connect)
        thread.start()
        thread.join()
    assert refused == []
