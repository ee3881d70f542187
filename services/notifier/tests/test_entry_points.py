"""The commands ops run: migrate, the consumer refusing a bad configuration, gunicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from koe_devkit.local_broker import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[3]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.integration
def test_migrate_then_ready_under_gunicorn(tmp_path):
    # One database kind is enough here: the migrations run on both in the other tests.
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'notifier.db'}",
        "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
    }
    done = run(["notifier.migrate"], {"DATABASE_URL": env["DATABASE_URL"]})
    assert done.returncode == 0, done.stderr
    assert run(["notifier.migrate"], {"DATABASE_URL": env["DATABASE_URL"]}).returncode == 0

    port = free_port()
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "notifier.wsgi:app"],
        env={**os.environ, **env},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            assert response.status == 200
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=20)


@pytest.mark.integration
def test_the_consumer_will_not_start_with_a_broken_divisions_file(tmp_path):
    broken = tmp_path / "divisions.yaml"
    broken.write_text("divisions: [\n")
    done = run(
        ["notifier.consumer"],
        {"KOE_DIVISIONS_FILE": str(broken), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
    )
    assert done.returncode == 2
    assert "KOE_DIVISIONS_FILE" in done.stderr
    assert "not valid YAML" in done.stderr


@pytest.mark.integration
def test_the_consumer_will_not_start_on_an_unmigrated_database(tmp_path):
    done = run(
        ["notifier.consumer"],
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
            "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        },
    )
    assert done.returncode == 2
    assert "python -m notifier.migrate" in done.stderr
