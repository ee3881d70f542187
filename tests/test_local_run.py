"""`make run` as a new user meets it: no settings at all, so koe starts its own
broker, SMTP sink and SQLite databases, serves requests, and Ctrl-C stops
every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from koe_devkit.local_broker import free_port
from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from support import REPO, SITE, from_address

pytestmark = pytest.mark.e2e


def test_make_run_starts_everything_on_sqlite_and_ctrl_c_stops_it(tmp_path: Path):
    ports = {name: free_port() for name in ("feedback", "aggregator", "notifier", "broker", "smtp")}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KOE_", "KAFKA_", "SMTP_", "FEEDBACK_", "AGGREGATOR_", "NOTIFIER_"))
    }
    env |= {
        "KOE_VAR_DIR": str(tmp_path / "var"),
        "KOE_FEEDBACK_PORT": str(ports["feedback"]),
        "KOE_AGGREGATOR_PORT": str(ports["aggregator"]),
        "KOE_NOTIFIER_PORT": str(ports["notifier"]),
        "KOE_BROKER_PORT": str(ports["broker"]),
        "SMTP_PORT": str(ports["smtp"]),
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "koe_devkit.local_stack"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner: list[str] = []
    try:
        for line in run.stdout:
            banner.append(line)
            if "logs" in line:
                break
        text = "".join(banner)
        assert f"http://127.0.0.1:{ports['feedback']}/api/v1/feedback" in text, text
        token = (tmp_path / "var" / "api-token").read_text().strip()
        assert len(token) >= 32

        # Five citizens on five addresses: a page no list names is shown once five
        # sources answered it (KOE_PAGE_MIN_SOURCES).
        page_url = f"{SITE}/kurashi/gomi/1.html"
        for n in range(1, 6):
            answer = from_address(f"127.0.0.{n}").post(
                f"http://127.0.0.1:{ports['feedback']}/api/v1/feedback",
                json={"page_url": page_url, "answers": {"usefulness": "yes"}},
                timeout=10,
            )
            assert answer.status_code == 202, answer.text
        page = f"http://127.0.0.1:{ports['aggregator']}/api/v1/pages/"
        page += page_id_for_url(canonical_url(page_url))

        def counted() -> bool:
            r = requests.get(page, headers={"Authorization": f"Bearer {token}"}, timeout=5)
            return r.status_code == 200 and r.json()["windows"]["all"]["n"] == 5

        wait_until(counted, what="the response in the stats, on SQLite")
        assert requests.get(page, timeout=5).status_code == 401
        for db in ("feedback", "aggregator", "notifier"):
            assert (tmp_path / "var" / f"{db}.db").exists()

        children = psutil.Process(run.pid).children(recursive=True)
        assert len(children) >= 8  # broker, SMTP sink, 3 web apps (+ workers), relay, 2 consumers
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=60)
        for log in sorted((tmp_path / "var" / "log").glob("*.log")):
            print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-2000:]}")
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"still running after Ctrl-C: {[p.cmdline() for p in alive]}"
